/**
 * Pulls from a password-protected registry (docker-registry with htpasswd): with the login the
 * container runs; without it, or with a wrong one, the start fails with a reason that says what
 * to do; the password is on no command line, in no file left behind, and in no error.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { buildBusyboxImage, startContainerd, startRegistry, tmpDir, waitFor } from '@oak/testkit';
import type { ContainerdInstance, RegistryInstance, TmpDir } from '@oak/testkit';
import { ContainerdRuntime } from '../src/containerd/index.ts';
import { RuntimeError, type InstanceSpec } from '../src/types.ts';

const login = { username: 'alice', password: `pw-${process.pid}-s3cr3t-${Math.random().toString(36).slice(2)}` };
let ctd: ContainerdInstance;
let reg: RegistryInstance;
let dir: TmpDir;
let image: string;
let rt: ContainerdRuntime;

before(async () => {
  ctd = await startContainerd();
  reg = await startRegistry({ auth: login });
  dir = await tmpDir('oak-ctd-auth');
  image = await buildBusyboxImage(reg, { name: 'private/busybox', creds: login });
  rt = new ContainerdRuntime({ socket: ctd.socket, namespace: ctd.namespace, dataDir: dir.path, portBindAddress: '127.0.0.1', stopGraceMs: 1000 });
});

after(async () => {
  for (const s of await rt?.list().catch(() => []) ?? []) await rt.stop(s.id).catch(() => undefined);
  await rt?.close();
  await ctd?.stop();
  await reg?.stop();
  await dir?.remove();
});

let n = 0;
function spec(o: Partial<InstanceSpec> = {}): InstanceSpec {
  n++;
  const job = 'app.test.private.test';
  return { id: `${job}.instance.${n}`, job_name: job, instance_number: n, virtualization: 'container', code: image, env: [], ports: [], one_shot: false, labels: {}, ...o };
}

const pullDirs = (): string[] => readdirSync(tmpdir()).filter((f) => f.startsWith('oak-pull-'));

test('the registry really wants a login (the image cannot be fetched anonymously)', async () => {
  const res = await fetch(`http://${reg.url}/v2/private/busybox/manifests/1`);
  assert.equal(res.status, 401);
  assert.match(res.headers.get('www-authenticate') ?? '', /^Basic /);
});

test('without a login the pull fails with a reason naming the host and `oak registry login`', async () => {
  const err = await rt.start(spec()).then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof RuntimeError, String(err));
  assert.equal(err.reason, 'image_pull_failed');
  assert.match(err.message, new RegExp(`registry ${reg.url.replace(/[.]/g, '\\.')} needs a login`));
  assert.match(err.message, /oak registry login/);
});

test('with a wrong password the pull fails saying the login was refused, without the password', async () => {
  const wrong = `${login.password}-wrong`;
  const err = await rt.start(spec({ registryAuth: { host: reg.url, username: login.username, password: wrong } })).then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof RuntimeError, String(err));
  assert.match(err.message, /refused the login of alice/);
  assert.ok(!err.message.includes(wrong) && !err.message.includes(login.password));
});

test('a login for another host is not used', async () => {
  const err = await rt.start(spec({ registryAuth: { host: 'other.example.com', ...login } })).then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof RuntimeError);
  assert.match(err.message, /needs a login/);
});

test('with the login the image is pulled and runs; no command line or leftover file holds the password', async () => {
  const before = new Set(pullDirs());
  const s = spec({ registryAuth: { host: reg.url, ...login } });
  // watch every process command line while the pull runs
  let seen = '';
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
        try {
          const cl = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
          if (cl.includes('images\u0000pull')) seen += `${cl.replace(/\u0000/g, ' ')}\n`;
        } catch {
          // gone
        }
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const st = await rt.start(s);
  watching = false;
  await watcher;
  assert.equal(st.state, 'RUNNING');
  await waitFor(async () => (await rt.status(s.id))?.state === 'RUNNING', { timeoutMs: 10_000, message: 'running' });
  assert.ok(!seen.includes(login.password), 'the password is on no command line');
  if (seen !== '') assert.match(seen, /--hosts-dir/);
  assert.deepEqual(pullDirs().filter((d) => !before.has(d)), [], 'the private hosts dir is removed');
  // a second instance of the same image needs no pull (and no login)
  const again = await rt.start(spec());
  assert.equal(again.state, 'RUNNING');
});
