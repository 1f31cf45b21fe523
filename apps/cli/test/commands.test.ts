/**
 * Every command of the real `oak` binary against a real root (no cluster: instances stay
 * REQUESTED), success and failure paths, output formats and exit codes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import type { ApplicationDoc, ServiceDoc } from '@oak/contracts';
import { ADMIN_PASSWORD, CliHome, example, fixture, startTestRoot, type TestRoot } from './helpers.ts';

const NO_STACK = /\n\s+at /;

describe('oak against a root', () => {
  let root: TestRoot;
  const home = new CliHome();
  let run: (args: string[], opts?: { stdin?: string; env?: Record<string, string | undefined> }) => ReturnType<CliHome['run']>;

  before(async () => {
    root = await startTestRoot();
    run = (args, opts = {}) => home.run(args, { ...opts, env: { OAK_ROOT_URL: root.url, ...opts.env } });
  });
  after(async () => {
    await root.close();
    home.cleanup();
  });

  const json = <T>(text: string): T => JSON.parse(text) as T;

  it('before login: a clear "log in" failure', async () => {
    const r = await run(['app', 'ls']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^oak: a bearer token is required\n {2}hint: log in with 'oak login'/);
    const w = await run(['whoami']);
    assert.equal(w.code, 1);
    assert.match(w.stderr, /not logged in/);
  });

  it('login: a wrong password is refused and nothing is stored', async () => {
    const r = await run(['login', '-u', 'Admin', '--password-stdin'], { stdin: 'wrong\n' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^oak: wrong user name or password\n {2}hint: check the user name and password/);
    assert.doesNotMatch(r.stderr, NO_STACK);
    assert.throws(() => statSync(home.configPath));
    const none = await run(['login', '-u', 'Admin']);
    assert.equal(none.code, 2, 'no password and no terminal is a usage error');
    assert.match(none.stderr, /no password given/);
  });

  it('login stores the tokens, never the password, in a 0600 file; whoami and logout', async () => {
    const r = await run(['login', '-u', 'Admin', '--password-stdin'], { stdin: `${ADMIN_PASSWORD}\n` });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`logged in to ${root.url.replace(/\./g, '\\.')} as Admin`));
    const text = readFileSync(home.configPath, 'utf8');
    assert.ok(!text.includes(ADMIN_PASSWORD), 'the password is not in the config file');
    const cfg = json<Record<string, string>>(text);
    assert.ok(cfg.token && cfg.refresh_token);
    assert.equal(cfg.username, 'Admin');
    assert.equal(cfg.root_url, undefined, 'the root URL came from the environment, not --root');
    assert.equal(statSync(home.configPath).mode & 0o777, 0o600);
    const w = await run(['whoami', '-o', 'json']);
    assert.equal(w.code, 0);
    assert.deepEqual(json<{ username: string; roles: string[] }>(w.stdout).roles, ['Admin']);

    const h2 = new CliHome();
    try {
      const viaEnv = await h2.run(['--root', root.url, 'login'], { env: { OAK_PASSWORD: ADMIN_PASSWORD } });
      assert.equal(viaEnv.code, 0, viaEnv.stderr);
      assert.equal(json<Record<string, string>>(readFileSync(h2.configPath, 'utf8')).root_url, root.url, '--root is remembered');
      const ls = await h2.run(['app', 'ls', '-o', 'json']);
      assert.equal(ls.code, 0, ls.stderr);
      const out = await h2.run(['logout']);
      assert.equal(out.code, 0);
      const cfg2 = json<Record<string, string>>(readFileSync(h2.configPath, 'utf8'));
      assert.equal(cfg2.token, undefined);
      assert.equal(cfg2.refresh_token, undefined);
      const after = await h2.run(['app', 'ls']);
      assert.equal(after.code, 1);
      const flag = await h2.run(['login', '-p', ADMIN_PASSWORD]);
      assert.equal(flag.code, 0);
      assert.match(flag.stderr, /^warning: a password on the command line can be read by other users/m);
    } finally {
      h2.cleanup();
    }
    // h2's logout revoked every session of Admin on the root, this home's too: log in again
    assert.equal((await run(['app', 'ls'])).code, 1);
    assert.equal((await run(['login', '-u', 'Admin', '--password-stdin'], { stdin: `${ADMIN_PASSWORD}\n` })).code, 0);
  });

  it('OAK_TOKEN is used instead of the stored token', async () => {
    const h = new CliHome();
    try {
      const token = json<{ token: string }>(readFileSync(home.configPath, 'utf8')).token;
      const r = await h.run(['app', 'ls', '-o', 'json'], { env: { OAK_ROOT_URL: root.url, OAK_TOKEN: token } });
      assert.equal(r.code, 0, r.stderr);
      const bad = await h.run(['app', 'ls'], { env: { OAK_ROOT_URL: root.url, OAK_TOKEN: 'not-a-token' } });
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /token is not valid/);
    } finally {
      h.cleanup();
    }
  });

  it('app create --no-deploy, then ls and show by name, name.namespace and id, in every format', async () => {
    const r = await run(['app', 'create', '-f', example('client-server.json'), '--no-deploy']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^created application clientsrvr\.test \([0-9a-f]{24}\)$/m);
    assert.match(r.stdout, /clientsrvr\.test\.server\.test\s+[0-9a-f]{24}\s+container\s+docker\.io\/library\/nginx:1\.27\s+no instances/);
    assert.match(r.stdout, /nothing deployed \(--no-deploy\)/);

    const ls = await run(['app', 'ls']);
    assert.equal(ls.code, 0);
    assert.match(ls.stdout, /^NAME\s+NAMESPACE\s+ID\s+SERVICES\s+INSTANCES\s+AGE$/m);
    assert.match(ls.stdout, /^clientsrvr\s+test\s+[0-9a-f]{24}\s+2\s+no instances\s+\d+s$/m);
    const apps = json<ApplicationDoc[]>((await run(['app', 'ls', '-o', 'json'])).stdout);
    assert.equal(apps.length, 1);
    const id = apps[0]?.applicationID ?? '';
    for (const ref of ['clientsrvr', 'clientsrvr.test', id]) {
      const show = await run(['app', 'show', ref, '-o', 'json']);
      assert.equal(show.code, 0, `${ref}: ${show.stderr}`);
      assert.equal(json<ApplicationDoc>(show.stdout).applicationID, id);
    }
    const human = await run(['app', 'show', 'clientsrvr']);
    assert.match(human.stdout, /^name:\s+clientsrvr$/m);
    assert.match(human.stdout, /^description:\s+A web server/m);
    assert.match(human.stdout, /clientsrvr\.test\.client\.test/);
    const yaml = await run(['app', 'show', id, '-o', 'yaml']);
    assert.match(yaml.stdout, new RegExp(`^applicationID: ${id}$`, 'm'));
  });

  it('app create: a conflict is the server\'s message with a CLI hint, exit 1', async () => {
    const r = await run(['app', 'create', '-f', example('client-server.json')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^oak: application clientsrvr in namespace test already exists/);
    assert.match(r.stderr, /hint: update it with 'oak app update <app> -f <file>'/);
    assert.doesNotMatch(r.stderr, NO_STACK);
    const j = await run(['app', 'create', '-f', example('client-server.json'), '-o', 'json']);
    assert.equal(j.code, 1);
    assert.equal(json<{ error: { code: string } }>(j.stderr).error.code, 'OAK_CONFLICT');
  });

  it('app create: an invalid SLA is refused offline with every path, and nothing is created', async () => {
    const before = (await run(['app', 'ls', '-o', 'json'])).stdout;
    const r = await run(['app', 'create', '-f', fixture('invalid.json')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /invalid\.json: the SLA has 4 problems:/);
    assert.match(r.stderr, /^ {2}applications\[0\]\.microservices\[0\]\.port: /m);
    assert.equal((await run(['app', 'ls', '-o', 'json'])).stdout, before);
    const missing = await run(['app', 'create', '-f', 'nowhere.json']);
    assert.equal(missing.code, 2);
    const broken = await run(['app', 'create', '-f', fixture('broken.json')]);
    assert.equal(broken.code, 1);
    assert.match(broken.stderr, /not valid JSON/);
  });

  it('app create deploys replicas of every service (REQUESTED without a cluster); instance ls', async () => {
    const r = await run(['app', 'create', '-f', example('constrained-placement.json'), '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const out = json<{ applications: ApplicationDoc[]; services: ServiceDoc[] }>(r.stdout);
    assert.equal(out.applications[0]?.application_name, 'edgecam');
    const counts = Object.fromEntries(out.services.map((s) => [s.microservice_name, s.instance_list.length]));
    assert.deepEqual(counts, { ingest: 1, analytics: 2 });
    const ls = await run(['instance', 'ls', '--app', 'edgecam']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /^INSTANCE\s+STATUS\s+HEALTH\s+RESTARTS\s+DETAIL\s+CLUSTER\s+WORKER\s+IP\s+AGE$/m);
    // not placed yet: no probe verdict, no restarts
    assert.match(ls.stdout, /^edgecam\.munich\.analytics\.munich\.instance\.1\s+REQUESTED\s+-\s+0\s+/m);
    assert.equal(ls.stdout.trim().split('\n').length, 4);
    const j = json<{ job_name: string; status: string; health: string | null; restarts: number }[]>((await run(['instance', 'ls', 'edgecam.ingest', '-o', 'json'])).stdout);
    assert.deepEqual(j.map((i) => [i.job_name, i.status, i.health, i.restarts]), [['edgecam.munich.ingest.munich', 'REQUESTED', null, 0]]);
    const all = json<unknown[]>((await run(['instance', 'ls', '-o', 'json'])).stdout);
    assert.equal(all.length, 3);
  });

  it('service ls and inspect by job name, app.svc, unique name and id; ambiguous and unknown names', async () => {
    const ls = await run(['service', 'ls']);
    assert.equal(ls.code, 0);
    assert.match(ls.stdout, /^SERVICE\s+ID\s+VIRT\s+CODE\s+INSTANCES$/m);
    assert.match(ls.stdout, /edgecam\.munich\.analytics\.munich\s+.*\s2 REQUESTED$/m);
    const mine = json<ServiceDoc[]>((await run(['service', 'ls', '--app', 'clientsrvr', '-o', 'json'])).stdout);
    assert.deepEqual(mine.map((s) => s.microservice_name).sort(), ['client', 'server']);
    const id = mine.find((s) => s.microservice_name === 'server')?.microserviceID ?? '';
    for (const ref of ['clientsrvr.test.server.test', 'clientsrvr.server', 'server', id]) {
      const r = await run(['service', 'inspect', ref, '-o', 'json']);
      assert.equal(r.code, 0, `${ref}: ${r.stderr}`);
      assert.equal(json<ServiceDoc>(r.stdout).microserviceID, id);
    }
    const human = await run(['service', 'inspect', 'clientsrvr.server']);
    assert.match(human.stdout, /^job:\s+clientsrvr\.test\.server\.test$/m);
    assert.match(human.stdout, /^service ip:\s+10\.30\.55\.55$/m);
    assert.match(human.stdout, /no instances; deploy one with 'oak service deploy clientsrvr\.test\.server\.test'/);
    const unknown = await run(['service', 'inspect', 'nosuch']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^oak: no service "nosuch"\n {2}hint: list them with 'oak service ls'/);
    const byBadId = await run(['service', 'inspect', '0123456789abcdef01234567']);
    assert.equal(byBadId.code, 1);
    assert.match(byBadId.stderr, /no service "0123456789abcdef01234567"/);
  });

  it('names that fit several services or applications are refused with the candidates', async () => {
    const sla = JSON.parse(readFileSync(example('client-server.json'), 'utf8')) as { applications: { application_namespace: string; microservices: { microservice_namespace: string; addresses?: unknown }[] }[] };
    const app = sla.applications[0];
    assert.ok(app);
    app.application_namespace = 'prod';
    for (const m of app.microservices) m.microservice_namespace = 'prod';
    // the example's rr_ip is the first copy's: a second service cannot have it (named in the error)
    const taken = await run(['app', 'create', '-f', '-', '--no-deploy'], { stdin: JSON.stringify(sla) });
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /rr_ip 10\.30\.55\.55 is taken by service clientsrvr\.test\.server\.test/);
    for (const m of app.microservices) delete m.addresses;
    const r = await run(['app', 'create', '-f', '-', '--no-deploy'], { stdin: JSON.stringify(sla) });
    assert.equal(r.code, 0, r.stderr);
    const a = await run(['app', 'show', 'clientsrvr']);
    assert.equal(a.code, 1);
    assert.match(a.stderr, /"clientsrvr" names 2 applications: clientsrvr\.test \([0-9a-f]{24}\), clientsrvr\.prod/);
    assert.match(a.stderr, /hint: write name\.namespace or the id/);
    const s = await run(['service', 'inspect', 'server']);
    assert.equal(s.code, 1);
    assert.match(s.stderr, /"server" names 2 services: clientsrvr\.test\.server\.test, clientsrvr\.prod\.server\.prod/);
    const d = await run(['app', 'delete', 'clientsrvr.prod']);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, /^deleted application clientsrvr\.prod \([0-9a-f]{24}\)$/m);
  });

  it('service deploy, scale up and down (highest numbers first), undeploy one and all', async () => {
    let r = await run(['service', 'deploy', 'clientsrvr.server', '-n', '2']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^deployed clientsrvr\.test\.server\.test\.instance\.0 \(REQUESTED\)$/m);
    assert.match(r.stdout, /^deployed clientsrvr\.test\.server\.test\.instance\.1 \(REQUESTED\)$/m);
    r = await run(['service', 'scale', 'clientsrvr.server', '4']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /clientsrvr\.test\.server\.test: 4 REQUESTED/);
    r = await run(['service', 'scale', 'clientsrvr.server', '1', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(json<ServiceDoc>(r.stdout).instance_list.map((i) => i.instance_number), [0]);
    r = await run(['service', 'scale', 'clientsrvr.server', '1']);
    assert.match(r.stdout, /already has 1 instance/);
    r = await run(['service', 'scale', 'clientsrvr.server', '3']);
    assert.equal(r.code, 0);
    // instance numbers are never reused: the two new ones are 4 and 5
    assert.match(r.stdout, /^deployed clientsrvr\.test\.server\.test\.instance\.5$/m);
    r = await run(['service', 'undeploy', 'clientsrvr.server', '--instance', '4']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^undeployed clientsrvr\.test\.server\.test\.instance\.4$/m);
    const left = json<ServiceDoc>((await run(['service', 'inspect', 'clientsrvr.server', '-o', 'json'])).stdout);
    assert.deepEqual(left.instance_list.map((i) => i.instance_number).sort(), [0, 5]);
    r = await run(['service', 'undeploy', 'clientsrvr.server', '--instance', '7']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /instance .*clientsrvr\.test\.server\.test\.instance\.7.* does not exist/);
    r = await run(['service', 'undeploy', 'clientsrvr.server']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /clientsrvr\.test\.server\.test: no instances/);
    r = await run(['service', 'scale', 'nosuch', '2']);
    assert.equal(r.code, 1);
  });

  it("Oakestra's verbs: application create -d / show / sla, s scale up|down, cluster list|info", async () => {
    let r = await run(['application', 'show', 'clientsrvr']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /clientsrvr/);
    r = await run(['a', 'sla', 'clientsrvr', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const doc = json<{ sla_version: string; applications: { application_name: string; microservices: Record<string, unknown>[] }[] }>(r.stdout);
    assert.equal(doc.sla_version, 'v2.0');
    assert.equal(doc.applications[0]?.application_name, 'clientsrvr');
    const ms = doc.applications[0]?.microservices ?? [];
    assert.ok(ms.length >= 1 && ms.every((m) => typeof m.microservice_name === 'string' && m.instance_list === undefined && m.microserviceID === undefined), 'SLA fields only');
    // what `sla` prints validates offline as an SLA
    r = await run(['validate', '-'], { stdin: JSON.stringify({ ...doc, applications: doc.applications.map((a) => ({ ...a, application_name: 'copyapp' })) }) });
    assert.equal(r.code, 0, r.stderr);
    r = await run(['s', 'scale', 'up', 'clientsrvr.server']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^deployed clientsrvr\.test\.server\.test\.instance\.\d+$/m);
    r = await run(['service', 'scale', 'up', 'clientsrvr.server', '2', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(json<ServiceDoc>(r.stdout).instance_list.length, 3);
    r = await run(['service', 'scale', 'down', 'clientsrvr.server', '-o', 'json']);
    assert.equal(json<ServiceDoc>(r.stdout).instance_list.length, 2);
    r = await run(['service', 'scale', 'down', 'clientsrvr.server', '9', '-o', 'json']);
    assert.equal(json<ServiceDoc>(r.stdout).instance_list.length, 0, 'never below 0');
    r = await run(['service', 'scale', 'up']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /scale up needs the service/);
    r = await run(['service', 'scale', 'clientsrvr.server']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /scale needs the count/);
    r = await run(['service', 'scale', 'up', 'clientsrvr.server', '-1']);
    assert.notEqual(r.code, 0);
    r = await run(['cluster', 'list']);
    assert.equal(r.code, 0, r.stderr);
  });

  it('service update: checked offline against the merged service, then applied', async () => {
    let r = await run(['service', 'update', 'clientsrvr.client', '-f', '-'], { stdin: '{"memory": 64, "environment": ["MODE=fast"]}' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /updated clientsrvr\.test\.client\.test \(memory, environment\)/);
    const s = json<ServiceDoc>((await run(['service', 'inspect', 'clientsrvr.client', '-o', 'json'])).stdout);
    assert.equal(s.memory, 64);
    assert.deepEqual(s.environment, ['MODE=fast']);
    r = await run(['service', 'update', 'clientsrvr.client', '-f', '-'], { stdin: '{"memory": "lots", "port": 80}' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^ {2}memory: /m);
    assert.match(r.stderr, /^ {2}port: .*string/m);
    r = await run(['service', 'update', 'clientsrvr.client', '-f', '-'], { stdin: '[1,2]' });
    assert.equal(r.code, 2);
  });

  it('app update: fields or an SLA; invalid input is refused with its path', async () => {
    let r = await run(['app', 'update', 'clientsrvr', '-f', fixture('app-patch.json')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /updated application clientsrvr\.test/);
    const a = json<ApplicationDoc>((await run(['app', 'show', 'clientsrvr', '-o', 'json'])).stdout);
    assert.equal(a.application_desc, 'updated by the CLI test');
    r = await run(['app', 'update', 'clientsrvr', '-f', '-'], { stdin: '{"application_name": "no dots."}' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /application_name: /);
    r = await run(['app', 'update', 'nosuch', '-f', fixture('app-patch.json')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no application "nosuch"/);
  });

  it('service logs without a cluster: the root says why, exit 1', async () => {
    await run(['service', 'deploy', 'clientsrvr.client']);
    const r = await run(['service', 'logs', 'clientsrvr.client']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^oak: logs are not available: no cluster is connected to this root\n {2}hint: /);
    const none = await run(['service', 'logs', 'clientsrvr.server']);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /has no instances/);
  });

  it('cluster ls, cluster info and node ls with no cluster', async () => {
    let r = await run(['cluster', 'ls']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^no clusters/);
    r = await run(['cluster', 'ls', '--active', '-o', 'json']);
    assert.deepEqual(json<unknown[]>(r.stdout), []);
    r = await run(['node', 'ls']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /no workers reported/);
    r = await run(['cluster', 'info', 'nosuch']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^oak: cluster "nosuch" does not exist\n {2}hint: list them with 'oak cluster ls'/);
    r = await run(['node', 'ls', '--cluster', 'nosuch']);
    assert.equal(r.code, 1);
  });

  it('events: one line per event, JSON lines with -o json, stops after --count', async () => {
    const ev = home.start(['events', '--count', '3'], { env: { OAK_ROOT_URL: root.url } });
    const evj = home.start(['events', '-o', 'json', '--types', 'application'], { env: { OAK_ROOT_URL: root.url } });
    const until = Date.now() + 20_000;
    while (root.root.ctx.events.size < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    const r = await run(['app', 'create', '-f', example('one-shot-job.json')]);
    assert.equal(r.code, 0, r.stderr);
    const done = await ev.done;
    assert.equal(done.code, 0, done.stderr);
    const lines = done.stdout.trim().split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines[0] ?? '', /^\d\d:\d\d:\d\d {2}application {2}created {4}batch\.jobs$/);
    assert.match(lines[1] ?? '', /^\d\d:\d\d:\d\d {2}service {6}created {4}batch\.jobs\.report\.jobs$/);
    assert.match(lines[2] ?? '', /^\d\d:\d\d:\d\d {2}instance {5}batch\.jobs\.report\.jobs\.instance\.0 {2}REQUESTED/);
    await evj.waitFor('"created"');
    evj.kill('SIGINT');
    const j = await evj.done;
    assert.equal(j.code, 0, 'Ctrl-C ends oak events with exit 0');
    const e = JSON.parse(j.stdout.trim().split('\n')[0] ?? '{}') as { type: string; action: string };
    assert.deepEqual([e.type, e.action], ['application', 'created']);
  });

  it('colours only when asked for (FORCE_COLOR) and never with NO_COLOR', async () => {
    const plain = await run(['instance', 'ls']);
    assert.doesNotMatch(plain.stdout, /\x1b\[/);
    const forced = await run(['instance', 'ls'], { env: { NO_COLOR: undefined, FORCE_COLOR: '1' } });
    assert.match(forced.stdout, /\x1b\[33mREQUESTED\x1b\[0m/, 'pending states are yellow');
    const both = await run(['instance', 'ls'], { env: { NO_COLOR: '1', FORCE_COLOR: '1' } });
    assert.doesNotMatch(both.stdout, /\x1b\[/);
    const flag = await run(['instance', 'ls', '--no-color'], { env: { NO_COLOR: undefined, FORCE_COLOR: '1' } });
    assert.doesNotMatch(flag.stdout, /\x1b\[/);
  });

  it('app delete: by name, several at once; unknown names exit 1 and delete nothing', async () => {
    let r = await run(['app', 'delete', 'batch', 'nosuch']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no application "nosuch"/);
    assert.equal((await run(['app', 'show', 'batch'])).code, 0, 'nothing deleted when one name is unknown');
    r = await run(['app', 'delete', 'batch', 'edgecam', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(json<{ deleted: string[] }>(r.stdout).deleted.length, 2);
    r = await run(['app', 'rm', 'clientsrvr', '--yes']);
    assert.equal(r.code, 0);
    r = await run(['app', 'ls']);
    assert.match(r.stdout, /^no applications/);
  });
});

describe('oak renews an expired token', () => {
  let root: TestRoot;
  const home = new CliHome();
  before(async () => {
    root = await startTestRoot({ accessTtlSec: 1 });
  });
  after(async () => {
    await root.close();
    home.cleanup();
  });

  it('with the refresh token, saving the new pair', async () => {
    const env = { OAK_ROOT_URL: root.url };
    const r = await home.run(['login', '--password-stdin'], { stdin: ADMIN_PASSWORD, env });
    assert.equal(r.code, 0, r.stderr);
    const first = JSON.parse(readFileSync(home.configPath, 'utf8')) as { token: string };
    await new Promise((res) => setTimeout(res, 2200));
    const ls = await home.run(['app', 'ls', '-o', 'json'], { env });
    assert.equal(ls.code, 0, ls.stderr);
    const second = JSON.parse(readFileSync(home.configPath, 'utf8')) as { token: string };
    assert.notEqual(second.token, first.token);
    assert.equal(statSync(home.configPath).mode & 0o777, 0o600);
  });
});
