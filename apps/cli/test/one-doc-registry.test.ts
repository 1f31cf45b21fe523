/**
 * Private registries through the whole tree: the real 1-DOC (`oak up`: root + cluster + worker,
 * private containerd) and a password-protected docker-registry (htpasswd). A deploy of an image
 * there fails with a clear reason until `oak registry login` stores the organisation's login;
 * then it pulls and runs. The password appears in no output of the CLI and no log of oakd.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { buildBusyboxImage, freePort, startContainerd, startRegistry, tmpDir } from '@oak/testkit';
import { removeInstanceNetwork } from '../../node-engine/src/network.ts';
import { CliHome, repoRoot } from './helpers.ts';

const PASSWORD = 'cli-1doc-secret';
const REG_LOGIN = { username: 'alice', password: `reg-${process.pid}-${Math.random().toString(36).slice(2)}-pw` };
const oakdReady = existsSync(join(repoRoot, 'apps/oakd/src/main.ts')) && existsSync(join(repoRoot, 'apps/oakd/bin/oakd.mjs'));

function sla(app: string, ms: Record<string, unknown>): string {
  return JSON.stringify({
    sla_version: 'v2.0',
    customerID: 'Admin',
    applications: [
      {
        application_name: app,
        application_namespace: 'cli',
        microservices: [{ microservice_name: 'svc', microservice_namespace: 'cli', virtualization: 'container', memory: 32, vcpus: 0.1, ...ms }],
      },
    ],
  });
}

test('a 1-DOC pulls from a password-protected registry with the stored login, and fails clearly without it', { timeout: 300_000, skip: oakdReady ? false : 'apps/oakd is not there yet' }, async (t) => {
  const ctd = await startContainerd();
  t.after(() => ctd.stop());
  const reg = await startRegistry({ auth: REG_LOGIN });
  t.after(() => reg.stop());
  const image = await buildBusyboxImage(reg, { name: 'private/busybox', creds: REG_LOGIN });
  const dir = await tmpDir('oak-cli-1doc-reg');
  t.after(() => dir.remove());
  const home = new CliHome();
  t.after(() => home.cleanup());
  // the worker's instance bridge, rules and namespaces (they outlive oakd, like its instances)
  t.after(() => removeInstanceNetwork({ namespace: ctd.namespace, dataDir: dir.path }));

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const args = [
    '--host', '127.0.0.1', '--port', String(port),
    '--link-port', String(await freePort()), '--cluster-port', String(await freePort()), '--mqtt-port', String(await freePort()),
    '--data-dir', dir.path, '--containerd', ctd.socket, '--namespace', ctd.namespace, '--report-interval', '500',
    // the CLI, not the overlay (e2e/test/one-doc.test.ts covers the 1-DOC's NetManager)
    '--netmanager', 'off',
  ];
  const up = home.start(['up', ...args], { env: { OAK_ADMIN_PASSWORD: PASSWORD, OAK_LOG_LEVEL: 'debug' }, timeoutMs: 280_000 });
  t.after(async () => {
    up.kill('SIGTERM');
    await up.done;
  });
  const outputs: string[] = [];
  const run = async (a: string[], opts: { stdin?: string } = {}): ReturnType<CliHome['run']> => {
    const res = await home.run(a, { ...opts, env: { OAK_ROOT_URL: url }, timeoutMs: 120_000 });
    outputs.push(res.stdout, res.stderr);
    return res;
  };

  // the root answers
  let exited = false;
  void up.done.then(() => (exited = true));
  const until = Date.now() + 60_000;
  for (;;) {
    const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (exited || Date.now() > until) assert.fail(`oak up did not start: ${up.stderr()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  let r = await run(['login', '--password-stdin'], { stdin: PASSWORD });
  assert.equal(r.code, 0, r.stderr);

  // the embedded cluster and its worker appear
  for (let k = 0; ; k++) {
    r = await run(['cluster', 'ls', '--active', '-o', 'json']);
    const cs = JSON.parse(r.stdout) as { resources: { workers: number } | null }[];
    if (cs.length === 1 && cs[0]?.resources?.workers === 1) break;
    if (k > 40) assert.fail(`no active cluster with a worker: ${r.stdout}`);
    await new Promise((res) => setTimeout(res, 500));
  }

  // without a login: FAILED, and the reason says what to do
  r = await run(['app', 'create', '-f', '-', '--wait', '--timeout', '90s'], { stdin: sla('nologin', { code: image, cmd: ['sh', '-c', 'echo private-pull-ok'], one_shot: true }) });
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, /nologin\.cli\.svc\.cli\.instance\.0 is FAILED/);
  assert.match(`${r.stdout}\n${r.stderr}`, new RegExp(`registry ${reg.url.replace(/\./g, '\\.')} needs a login`));

  // the organisation's login, then the same image pulls and runs
  r = await run(['registry', 'login', reg.url, '-u', REG_LOGIN.username, '--password-stdin'], { stdin: `${REG_LOGIN.password}\n` });
  assert.equal(r.code, 0, r.stderr);
  r = await run(['app', 'create', '-f', '-', '--wait', '--timeout', '90s'], { stdin: sla('withlogin', { code: image, cmd: ['sh', '-c', 'echo private-pull-ok; sleep 600'] }) });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /1 RUNNING/);
  r = await run(['service', 'logs', 'withlogin.svc', '--instance', '0']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /private-pull-ok/);

  // a wrong login: the registry's refusal is the reason
  r = await run(['registry', 'login', reg.url, '-u', REG_LOGIN.username, '--password-stdin'], { stdin: 'not-the-password\n' });
  assert.equal(r.code, 0, r.stderr);
  r = await run(['app', 'create', '-f', '-', '--wait', '--timeout', '90s'], { stdin: sla('wrong', { code: `${reg.url}/private/busybox:absent`, one_shot: true }) });
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  assert.match(`${r.stdout}\n${r.stderr}`, /refused the login of alice/);

  r = await run(['app', 'delete', 'nologin', 'withlogin', 'wrong']);
  assert.equal(r.code, 0, r.stderr);
  for (const o of outputs) assert.ok(!o.includes(REG_LOGIN.password), 'the password is in no CLI output');
  assert.ok(!up.stderr().includes(REG_LOGIN.password) && !up.stdout().includes(REG_LOGIN.password), 'the password is in no oakd log line');
});
