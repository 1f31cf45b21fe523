/** `oak service history` and `oak service rollback` (issue 9) with the real binary against a real root. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServiceDoc, ServiceVersionDoc } from '@oak/contracts';
import { ADMIN_PASSWORD, CliHome, example, startTestRoot, type TestRoot } from './helpers.ts';

describe('oak service history / rollback', () => {
  let root: TestRoot;
  const home = new CliHome();
  let run: (args: string[], opts?: { stdin?: string }) => ReturnType<CliHome['run']>;
  const json = <T>(text: string): T => JSON.parse(text) as T;

  before(async () => {
    root = await startTestRoot();
    run = (args, opts = {}) => home.run(args, { ...opts, env: { OAK_ROOT_URL: root.url } });
    assert.equal((await run(['login', '-u', 'Admin', '--password-stdin'], { stdin: `${ADMIN_PASSWORD}\n` })).code, 0);
    assert.equal((await run(['app', 'create', '-f', example('client-server.json'), '--no-deploy'])).code, 0);
    for (const memory of [200, 300]) {
      const u = await run(['service', 'update', 'clientsrvr.server', '-f', '-'], { stdin: JSON.stringify({ memory }) });
      assert.equal(u.code, 0, u.stderr);
    }
  });
  after(async () => {
    await root.close();
    home.cleanup();
  });

  it('history: a table of VERSION, CREATED, BY, REASON, OUTCOME; -o json has the SLAs', async () => {
    const r = await run(['service', 'history', 'clientsrvr.server']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^VERSION\s+CREATED\s+BY\s+REASON\s+OUTCOME$/m);
    assert.match(r.stdout, /^1\s+\S+ \(\d+s ago\)\s+Admin\s+created\s+superseded$/m);
    assert.match(r.stdout, /^3 \(current\)\s+.*\s+Admin\s+updated\s+rolling$/m);
    const j = json<ServiceVersionDoc[]>((await run(['service', 'history', 'clientsrvr.server', '-o', 'json'])).stdout);
    assert.deepEqual(j.map((v) => [v.version, v.sla.memory]), [[1, 100], [2, 200], [3, 300]]);
    const inspect = await run(['service', 'inspect', 'clientsrvr.server']);
    assert.match(inspect.stdout, /^version:\s+3$/m);
  });

  it('rollback: default target, then --to N; the new version says why', async () => {
    const r = await run(['service', 'rollback', 'clientsrvr.server']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^clientsrvr\.test\.server\.test: version 4 \(rollback to 2\)/m);
    const to = await run(['service', 'rollback', 'clientsrvr.server', '--to', '1', '-o', 'json']);
    assert.equal(to.code, 0, to.stderr);
    const doc = json<ServiceDoc>(to.stdout);
    assert.equal(doc.version, 5);
    assert.equal(doc.memory, 100);
    const h = await run(['service', 'history', 'clientsrvr.server']);
    assert.match(h.stdout, /^5 \(current\)\s+.*\s+Admin\s+rollback to 1\s+rolling$/m);
  });

  it('rollback refusals: unknown version (404), the same SLA (409), bad --to (usage, exit 2); nothing stored', async () => {
    const before = (await run(['service', 'history', 'clientsrvr.server', '-o', 'json'])).stdout;
    const nf = await run(['service', 'rollback', 'clientsrvr.server', '--to', '99']);
    assert.equal(nf.code, 1);
    assert.match(nf.stderr, /^oak: .*version.*99/m);
    const same = await run(['service', 'rollback', 'clientsrvr.server', '--to', '5']);
    assert.equal(same.code, 1);
    assert.match(same.stderr, /current version/);
    assert.match(same.stderr, /hint: .*'oak service history <service>'/);
    const j = await run(['service', 'rollback', 'clientsrvr.server', '--to', '1', '-o', 'json']);
    assert.equal(j.code, 1);
    assert.equal(json<{ error: { code: string } }>(j.stderr).error.code, 'OAK_CONFLICT');
    for (const bad of ['0', '-1', 'x', '1.5', '1e3', '99999999999']) {
      const u = await run(['service', 'rollback', 'clientsrvr.server', '--to', bad]);
      assert.equal(u.code, 2, `--to ${bad}: ${u.stderr}`);
      assert.match(u.stderr, /--to must be a version number/);
    }
    assert.equal((await run(['service', 'history', 'clientsrvr.server', '-o', 'json'])).stdout, before);
    const unknown = await run(['service', 'history', 'nosuch']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no service "nosuch"/);
  });

  it('oak validate checks the update and disconnect blocks offline, path by path', async () => {
    const doc = JSON.parse(readFileSync(example('web-server.json'), 'utf8')) as { applications: { microservices: Record<string, unknown>[] }[] };
    const ms = doc.applications[0]?.microservices[0] ?? {};
    ms['update'] = { max_surge: 0, bogus: 1 };
    ms['disconnect'] = { reconcile: 'x', lost_after_s: 1e12 };
    const file = join(home.dir, 'bad-update.json');
    writeFileSync(file, JSON.stringify(doc));
    const r = await run(['validate', file]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /the SLA has 4 problems/);
    for (const p of ['update.bogus', 'update.max_surge', 'disconnect.reconcile', 'disconnect.lost_after_s']) {
      assert.match(r.stderr, new RegExp(`^ {2}applications\\[0\\]\\.microservices\\[0\\]\\.${p.replace('.', '\\.')}: `, 'm'));
    }
    ms['update'] = { max_surge: 0, max_unavailable: 1, auto_rollback: true };
    ms['disconnect'] = { lost_after_s: 60, replace: false, reconcile: 'keep_original' };
    writeFileSync(file, JSON.stringify(doc));
    const ok = await run(['validate', file]);
    assert.equal(ok.code, 0, ok.stderr);
  });
});
