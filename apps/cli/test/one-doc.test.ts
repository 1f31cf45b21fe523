/**
 * The CLI against the real 1-DOC, started with `oak up` itself (root + cluster + worker in one
 * process, private containerd, local registry, busybox image): --wait until real containers
 * run, logs and logs -f, a one-shot job, a failure and a pending reason, scale, nodes, doctor.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { buildBusyboxImage, freePort, startContainerd, startRegistry, tmpDir } from '@oak/testkit';
import { removeInstanceNetwork } from '../../node-engine/src/network.ts';
import { CliHome, repoRoot } from './helpers.ts';

const PASSWORD = 'cli-1doc-secret';
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

test('oak up + the CLI: a 1-DOC driven from the terminal', { timeout: 300_000, skip: oakdReady ? false : 'apps/oakd is not there yet' }, async (t) => {
  const ctd = await startContainerd();
  t.after(() => ctd.stop());
  const reg = await startRegistry();
  t.after(() => reg.stop());
  const image = await buildBusyboxImage(reg);
  const dir = await tmpDir('oak-cli-1doc');
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
  const up = home.start(['up', ...args], { env: { OAK_ADMIN_PASSWORD: PASSWORD, OAK_LOG_LEVEL: 'warn' }, timeoutMs: 280_000 });
  t.after(async () => {
    up.kill('SIGTERM');
    await up.done;
  });
  const run = (a: string[], opts: { stdin?: string } = {}): ReturnType<CliHome['run']> => home.run(a, { ...opts, env: { OAK_ROOT_URL: url }, timeoutMs: 120_000 });

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
  r = await run(['node', 'ls']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim().split('\n').length, 2, `one worker: ${r.stdout}`);

  // SLA -> real containers RUNNING, followed by --wait
  r = await run(['app', 'create', '-f', '-', '--wait', '--timeout', '90s'], { stdin: sla('web', { code: image, cmd: ['sh', '-c', 'echo hello-from-cli; sleep 600'], replicas: 2 }) });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /web\.cli\.svc\.cli\s+.*\s2 RUNNING$/m);
  r = await run(['instance', 'ls', 'web.svc']);
  assert.match(r.stdout, /^web\.cli\.svc\.cli\.instance\.0\s+RUNNING\s+/m);

  // logs, and logs -f until Ctrl-C
  r = await run(['service', 'logs', 'web.svc', '--instance', '0']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /hello-from-cli/);
  const follow = home.start(['service', 'logs', 'web.svc', '-f'], { env: { OAK_ROOT_URL: url } });
  await follow.waitFor(/\[1\] hello-from-cli/, 30_000);
  follow.kill('SIGINT');
  assert.equal((await follow.done).code, 0);

  // a one-shot job ends COMPLETED; one that exits 3 ends FAILED with the reason
  r = await run(['app', 'create', '-f', '-', '--wait', '--timeout', '90s'], { stdin: sla('job', { code: image, cmd: ['sh', '-c', 'echo working; sleep 1'], one_shot: true }) });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /1 COMPLETED/);
  r = await run(['app', 'create', '-f', '-', '--wait', '--timeout', '90s'], { stdin: sla('bad', { code: image, cmd: ['sh', '-c', 'exit 3'], one_shot: true }) });
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, /^oak: bad\.cli\.svc\.cli\.instance\.0 is FAILED/m);

  // no capacity: the pending reason, after the timeout
  r = await run(['app', 'create', '-f', '-', '--wait', '--timeout', '5s'], { stdin: sla('huge', { code: image, memory: 10_000_000 }) });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /timed out after 5s/);
  assert.match(r.stderr, /huge\.cli\.svc\.cli\.instance\.0: REQUESTED \(.+\)/);

  // scale down and up again
  r = await run(['service', 'scale', 'web.svc', '1', '--wait']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /web\.cli\.svc\.cli: 1 RUNNING/);

  r = await run(['doctor', '--client']);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^✓ clusters\s+1 active, 1 worker$/m);

  r = await run(['app', 'delete', 'web', 'job', 'bad', 'huge']);
  assert.equal(r.code, 0, r.stderr);
  r = await run(['instance', 'ls']);
  assert.match(r.stdout, /^no instances/);
});
