/**
 * Oakestra's CLI verbs and flags (issue 12 point 5) as aliases of ours, run through the real
 * `oak` binary against a real root (no cluster: instances stay REQUESTED). The forms are those
 * of Oakestra's Go CLI: `application create [sla] -d`, `application show`, `application delete
 * <app> -y`, `service show -i/-n`, `service deploy [svc] --all`, `service undeploy <svc> [n]`,
 * `service inspect <svc> [n]`, `service logs <svc> <n>`, `service scale up|down <svc> <n>`,
 * `cluster list -a`, `cluster info <c>` and the short names (a, s, cl, c, d, u, i).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ApplicationDoc, ServiceDoc } from '@oak/contracts';
import { ADMIN_PASSWORD, CliHome, example, startTestRoot, type TestRoot } from './helpers.ts';

describe("Oakestra's CLI verbs", () => {
  let root: TestRoot;
  const home = new CliHome();
  let run: (args: string[], opts?: { stdin?: string }) => ReturnType<CliHome['run']>;
  const json = <T>(text: string): T => JSON.parse(text) as T;

  before(async () => {
    root = await startTestRoot();
    run = (args, opts = {}) => home.run(args, { ...opts, env: { OAK_ROOT_URL: root.url } });
    const r = await run(['login', '-u', 'Admin', '--password-stdin'], { stdin: `${ADMIN_PASSWORD}\n` });
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await root.close();
    home.cleanup();
  });

  it('application create <sla> -d (positional file), application show (a list), a c', async () => {
    let r = await run(['application', 'create', example('client-server.json'), '-d']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^created application clientsrvr\.test \([0-9a-f]{24}\)$/m);
    r = await run(['a', 'c', '-f', example('web-server.json'), '-d']);
    assert.equal(r.code, 0, r.stderr);
    r = await run(['application', 'create', example('web-server.json'), '-f', example('client-server.json')]);
    assert.equal(r.code, 2, 'the file twice, different');
    assert.match(r.stderr, /give the SLA file once/);
    r = await run(['application', 'create']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /create needs the SLA file/);
    r = await run(['application', 'show', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(json<ApplicationDoc[]>(r.stdout).map((a) => a.application_name).sort(), ['clientsrvr', 'webdemo']);
    r = await run(['application', 'show']);
    assert.match(r.stdout, /^NAME\s+NAMESPACE\s+ID\s+SERVICES/m);
  });

  it('service show (list, -i / -n filters), show <svc>, inspect <svc> [n], s i', async () => {
    let r = await run(['service', 'show', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const all = json<ServiceDoc[]>(r.stdout);
    assert.ok(all.length >= 3, 'client, server and web');
    r = await run(['s', 'show', '-n', 'clientsrvr', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const cs = json<ServiceDoc[]>(r.stdout);
    assert.deepEqual(cs.map((s) => s.microservice_name).sort(), ['client', 'server']);
    r = await run(['s', 'show', '-i', cs[0]?.applicationID ?? '', '-o', 'json']);
    assert.equal(json<ServiceDoc[]>(r.stdout).length, 2);
    r = await run(['s', 'show', '-i', 'x', '-n', 'y']);
    assert.equal(r.code, 2);
    r = await run(['service', 'show', 'clientsrvr.server', '-o', 'json']);
    assert.equal(json<ServiceDoc>(r.stdout).microservice_name, 'server');
    r = await run(['s', 'i', 'clientsrvr.server', '0', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(json<ServiceDoc>(r.stdout).instance_list.map((i) => i.instance_number), [0]);
    r = await run(['service', 'inspect', 'clientsrvr.server', '7']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /has no instance 7/);
    r = await run(['service', 'inspect', 'clientsrvr.server', 'x']);
    assert.notEqual(r.code, 0);
  });

  it('service deploy [svc] / --all, undeploy <svc> [n], s d, s u, scale up|down <svc> <n>', async () => {
    const count = async (ref: string): Promise<number> => json<ServiceDoc>((await run(['s', 'inspect', ref, '-o', 'json'])).stdout).instance_list.length;
    const before = await count('clientsrvr.server');
    let r = await run(['s', 'd', 'clientsrvr.server']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await count('clientsrvr.server'), before + 1);
    const services = json<ServiceDoc[]>((await run(['service', 'show', '-o', 'json'])).stdout);
    r = await run(['service', 'deploy', '--all']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((r.stdout.match(/^deployed /gm) ?? []).length, services.length, 'one more of every service');
    r = await run(['service', 'deploy', 'clientsrvr.server', '--all']);
    assert.equal(r.code, 2);
    r = await run(['service', 'deploy']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /deploy needs the service/);
    const now = await count('clientsrvr.server');
    r = await run(['s', 'u', 'clientsrvr.server', '0']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^undeployed clientsrvr\.test\.server\.test\.instance\.0$/m);
    assert.equal(await count('clientsrvr.server'), now - 1);
    r = await run(['s', 'u', 'clientsrvr.server', '1', '--instance', '2']);
    assert.equal(r.code, 2, 'two different instance numbers');
    r = await run(['service', 'scale', 'up', 'webdemo.web', '2', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const web = json<ServiceDoc>(r.stdout).instance_list.length;
    r = await run(['service', 'scale', 'down', 'webdemo.web', '1', '-o', 'json']);
    assert.equal(json<ServiceDoc>(r.stdout).instance_list.length, web - 1);
  });

  it('service logs <svc> <n>: the instance number as an argument', async () => {
    // no worker runs it: the root answers that the instance has no logs yet, for that number
    const r = await run(['service', 'logs', 'clientsrvr.client', '0']);
    assert.notEqual(r.code, 2, `not a usage error: ${r.stderr}`);
    const bad = await run(['service', 'logs', 'clientsrvr.client', 'zero']);
    assert.equal(bad.code, 2);
  });

  it('cluster list -a, cl ls, cluster info / i of a missing cluster', async () => {
    let r = await run(['cluster', 'list', '-a', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(json<unknown[]>(r.stdout), []);
    r = await run(['cl', 'ls', '--all', '--active']);
    assert.equal(r.code, 2);
    r = await run(['cl', 'i', 'nowhere']);
    assert.equal(r.code, 1);
  });

  it('application delete <app> -y and its short names (d, del)', async () => {
    let r = await run(['application', 'delete', 'webdemo', '-y']);
    assert.equal(r.code, 0, r.stderr);
    r = await run(['a', 'del', 'clientsrvr', '-y']);
    assert.equal(r.code, 0, r.stderr);
    r = await run(['a', 'show', '-o', 'json']);
    assert.deepEqual(json<unknown[]>(r.stdout), []);
    r = await run(['a', 'd', 'clientsrvr', '-y']);
    assert.equal(r.code, 1, 'gone');
  });
});
