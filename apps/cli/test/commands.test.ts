/**
 * Every command of the real `oak` binary against a real root (no cluster: instances stay
 * REQUESTED), success and failure paths, output formats and exit codes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import type { ApplicationDoc, ServiceDoc } from '@oak/contracts';
import { waitFor } from '@oak/testkit';
import { ADMIN_PASSWORD, CliHome, example, fixture, startTestRoot, type TestRoot } from './helpers.ts';

const NO_STACK = /\n\s+at /;

// three parts, each with a root of its own, at once: logging in; applications and services
// (logged in); the renewal of an expired token. Within a part the tests build on each other, one
// after the other (concurrency 1: a part would inherit the outer `true`).
describe('oak against a root', { concurrency: true }, () => {
  const json = <T>(text: string): T => JSON.parse(text) as T;

  describe('logging in', { concurrency: 1 }, () => {
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

    it('before login: a clear "log in" failure', async () => {
      const [r, w] = await Promise.all([run(['app', 'ls']), run(['whoami'])]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^oak: a bearer token is required\n {2}hint: log in with 'oak login'/);
      assert.equal(w.code, 1);
      assert.match(w.stderr, /not logged in/);
    });

    it('login: a wrong password is refused and nothing is stored', async () => {
      const [r, none] = await Promise.all([run(['login', '-u', 'Admin', '--password-stdin'], { stdin: 'wrong\n' }), run(['login', '-u', 'Admin'])]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^oak: wrong user name or password\n {2}hint: check the user name and password/);
      assert.doesNotMatch(r.stderr, NO_STACK);
      assert.throws(() => statSync(home.configPath));
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

      const h2 = new CliHome();
      try {
        // whoami beside h2's login (h2's logout below revokes this home's session too: it comes after)
        const [w, viaEnv] = await Promise.all([run(['whoami', '-o', 'json']), h2.run(['--root', root.url, 'login'], { env: { OAK_PASSWORD: ADMIN_PASSWORD } })]);
        assert.equal(w.code, 0);
        assert.deepEqual(json<{ username: string; roles: string[] }>(w.stdout).roles, ['Admin']);
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
        const [r, bad] = await Promise.all([
          h.run(['app', 'ls', '-o', 'json'], { env: { OAK_ROOT_URL: root.url, OAK_TOKEN: token } }),
          h.run(['app', 'ls'], { env: { OAK_ROOT_URL: root.url, OAK_TOKEN: 'not-a-token' } }),
        ]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(bad.code, 1);
        assert.match(bad.stderr, /token is not valid/);
      } finally {
        h.cleanup();
      }
    });

  });

  describe('applications and services', { concurrency: 1 }, () => {
    let root: TestRoot;
    const home = new CliHome();
    let run: (args: string[], opts?: { stdin?: string; env?: Record<string, string | undefined> }) => ReturnType<CliHome['run']>;

    before(async () => {
      root = await startTestRoot();
      run = (args, opts = {}) => home.run(args, { ...opts, env: { OAK_ROOT_URL: root.url, ...opts.env } });
      const r = await run(['login', '-u', 'Admin', '--password-stdin'], { stdin: `${ADMIN_PASSWORD}\n` });
      assert.equal(r.code, 0, r.stderr);
    });
    after(async () => {
      await root.close();
      home.cleanup();
    });

    it('app create --no-deploy, then ls and show by name, name.namespace and id, in every format', async () => {
      const r = await run(['app', 'create', '-f', example('client-server.json'), '--no-deploy']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^created application clientsrvr\.test \([0-9a-f]{24}\)$/m);
      assert.match(r.stdout, /clientsrvr\.test\.server\.test\s+[0-9a-f]{24}\s+container\s+docker\.io\/library\/nginx:1\.27\s+no instances/);
      assert.match(r.stdout, /nothing deployed \(--no-deploy\)/);

      const [ls, lsJson] = await Promise.all([run(['app', 'ls']), run(['app', 'ls', '-o', 'json'])]);
      assert.equal(ls.code, 0);
      assert.match(ls.stdout, /^NAME\s+NAMESPACE\s+ID\s+SERVICES\s+INSTANCES\s+AGE$/m);
      assert.match(ls.stdout, /^clientsrvr\s+test\s+[0-9a-f]{24}\s+2\s+no instances\s+\d+s$/m);
      const apps = json<ApplicationDoc[]>(lsJson.stdout);
      assert.equal(apps.length, 1);
      const id = apps[0]?.applicationID ?? '';
      const refs = ['clientsrvr', 'clientsrvr.test', id];
      const [human, yaml, ...shows] = await Promise.all([run(['app', 'show', 'clientsrvr']), run(['app', 'show', id, '-o', 'yaml']), ...refs.map((ref) => run(['app', 'show', ref, '-o', 'json']))]);
      refs.forEach((ref, k) => {
        const show = shows[k];
        assert.ok(show);
        assert.equal(show.code, 0, `${ref}: ${show.stderr}`);
        assert.equal(json<ApplicationDoc>(show.stdout).applicationID, id);
      });
      assert.match(human.stdout, /^name:\s+clientsrvr$/m);
      assert.match(human.stdout, /^description:\s+A web server/m);
      assert.match(human.stdout, /clientsrvr\.test\.client\.test/);
      assert.match(yaml.stdout, new RegExp(`^applicationID: ${id}$`, 'm'));
    });

    it('app create: a conflict is the server\'s message with a CLI hint, exit 1', async () => {
      const [r, j] = await Promise.all([run(['app', 'create', '-f', example('client-server.json')]), run(['app', 'create', '-f', example('client-server.json'), '-o', 'json'])]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^oak: application clientsrvr in namespace test already exists/);
      assert.match(r.stderr, /hint: update it with 'oak app update <app> -f <file>'/);
      assert.doesNotMatch(r.stderr, NO_STACK);
      assert.equal(j.code, 1);
      assert.equal(json<{ error: { code: string } }>(j.stderr).error.code, 'OAK_CONFLICT');
    });

    it('app create: an invalid SLA is refused offline with every path, and nothing is created', async () => {
      const before = (await run(['app', 'ls', '-o', 'json'])).stdout;
      const [r, missing, broken] = await Promise.all([run(['app', 'create', '-f', fixture('invalid.json')]), run(['app', 'create', '-f', 'nowhere.json']), run(['app', 'create', '-f', fixture('broken.json')])]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /invalid\.json: the SLA has 4 problems:/);
      assert.match(r.stderr, /^ {2}applications\[0\]\.microservices\[0\]\.port: /m);
      assert.equal((await run(['app', 'ls', '-o', 'json'])).stdout, before);
      assert.equal(missing.code, 2);
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
      const [ls, ingest, allJson] = await Promise.all([run(['instance', 'ls', '--app', 'edgecam']), run(['instance', 'ls', 'edgecam.ingest', '-o', 'json']), run(['instance', 'ls', '-o', 'json'])]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stdout, /^INSTANCE\s+STATUS\s+HEALTH\s+RESTARTS\s+DETAIL\s+CLUSTER\s+WORKER\s+IP\s+AGE$/m);
      // not placed yet: no probe verdict, no restarts
      assert.match(ls.stdout, /^edgecam\.munich\.analytics\.munich\.instance\.1\s+REQUESTED\s+-\s+0\s+/m);
      assert.equal(ls.stdout.trim().split('\n').length, 4);
      const j = json<{ job_name: string; status: string; health: string | null; restarts: number }[]>(ingest.stdout);
      assert.deepEqual(j.map((i) => [i.job_name, i.status, i.health, i.restarts]), [['edgecam.munich.ingest.munich', 'REQUESTED', null, 0]]);
      const all = json<unknown[]>(allJson.stdout);
      assert.equal(all.length, 3);
    });

    it('service ls and inspect by job name, app.svc, unique name and id; ambiguous and unknown names', async () => {
      const [ls, mineJson, human, unknown, byBadId] = await Promise.all([
        run(['service', 'ls']),
        run(['service', 'ls', '--app', 'clientsrvr', '-o', 'json']),
        run(['service', 'inspect', 'clientsrvr.server']),
        run(['service', 'inspect', 'nosuch']),
        run(['service', 'inspect', '0123456789abcdef01234567']),
      ]);
      assert.equal(ls.code, 0);
      assert.match(ls.stdout, /^SERVICE\s+ID\s+VIRT\s+CODE\s+INSTANCES$/m);
      assert.match(ls.stdout, /edgecam\.munich\.analytics\.munich\s+.*\s2 REQUESTED$/m);
      const mine = json<ServiceDoc[]>(mineJson.stdout);
      assert.deepEqual(mine.map((s) => s.microservice_name).sort(), ['client', 'server']);
      const id = mine.find((s) => s.microservice_name === 'server')?.microserviceID ?? '';
      const refs = ['clientsrvr.test.server.test', 'clientsrvr.server', 'server', id];
      const inspected = await Promise.all(refs.map((ref) => run(['service', 'inspect', ref, '-o', 'json'])));
      refs.forEach((ref, k) => {
        const r = inspected[k];
        assert.ok(r);
        assert.equal(r.code, 0, `${ref}: ${r.stderr}`);
        assert.equal(json<ServiceDoc>(r.stdout).microserviceID, id);
      });
      assert.match(human.stdout, /^job:\s+clientsrvr\.test\.server\.test$/m);
      assert.match(human.stdout, /^service ip:\s+10\.30\.55\.55$/m);
      assert.match(human.stdout, /no instances; deploy one with 'oak service deploy clientsrvr\.test\.server\.test'/);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /^oak: no service "nosuch"\n {2}hint: list them with 'oak service ls'/);
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
      const [a, s] = await Promise.all([run(['app', 'show', 'clientsrvr']), run(['service', 'inspect', 'server'])]);
      assert.equal(a.code, 1);
      assert.match(a.stderr, /"clientsrvr" names 2 applications: clientsrvr\.test \([0-9a-f]{24}\), clientsrvr\.prod/);
      assert.match(a.stderr, /hint: write name\.namespace or the id/);
      assert.equal(s.code, 1);
      assert.match(s.stderr, /"server" names 2 services: clientsrvr\.test\.server\.test, clientsrvr\.prod\.server\.prod/);
      const d = await run(['app', 'delete', 'clientsrvr.prod']);
      assert.equal(d.code, 0, d.stderr);
      assert.match(d.stdout, /^deleted application clientsrvr\.prod \([0-9a-f]{24}\)$/m);
    });

    it('service deploy, scale up and down (highest numbers first), undeploy one and all', async () => {
      const [deployed, unknown] = await Promise.all([run(['service', 'deploy', 'clientsrvr.server', '-n', '2']), run(['service', 'scale', 'nosuch', '2'])]);
      assert.equal(unknown.code, 1);
      let r = deployed;
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
      const [inspected, seven] = await Promise.all([run(['service', 'inspect', 'clientsrvr.server', '-o', 'json']), run(['service', 'undeploy', 'clientsrvr.server', '--instance', '7'])]);
      const left = json<ServiceDoc>(inspected.stdout);
      assert.deepEqual(left.instance_list.map((i) => i.instance_number).sort(), [0, 5]);
      assert.equal(seven.code, 1);
      assert.match(seven.stderr, /instance .*clientsrvr\.test\.server\.test\.instance\.7.* does not exist/);
      r = await run(['service', 'undeploy', 'clientsrvr.server']);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /clientsrvr\.test\.server\.test: no instances/);
    });

    it("Oakestra's verbs: application create -d / show / sla, s scale up|down, cluster list|info", async () => {
      // what changes nothing (reads, usage errors) at once; the scaling one after the other
      const [shown, slaOut, noService, noCount, negative, clusters] = await Promise.all([
        run(['application', 'show', 'clientsrvr']),
        run(['a', 'sla', 'clientsrvr', '-o', 'json']),
        run(['service', 'scale', 'up']),
        run(['service', 'scale', 'clientsrvr.server']),
        run(['service', 'scale', 'up', 'clientsrvr.server', '-1']),
        run(['cluster', 'list']),
      ]);
      let r = shown;
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /clientsrvr/);
      assert.equal(noService.code, 2);
      assert.match(noService.stderr, /scale up needs the service/);
      assert.equal(noCount.code, 2);
      assert.match(noCount.stderr, /scale needs the count/);
      assert.notEqual(negative.code, 0);
      assert.equal(clusters.code, 0, clusters.stderr);
      r = slaOut;
      assert.equal(r.code, 0, r.stderr);
      const doc = json<{ sla_version: string; applications: { application_name: string; microservices: Record<string, unknown>[] }[] }>(r.stdout);
      assert.equal(doc.sla_version, 'v2.0');
      assert.equal(doc.applications[0]?.application_name, 'clientsrvr');
      const ms = doc.applications[0]?.microservices ?? [];
      assert.ok(ms.length >= 1 && ms.every((m) => typeof m.microservice_name === 'string' && m.instance_list === undefined && m.microserviceID === undefined), 'SLA fields only');
      // what `sla` prints validates offline as an SLA
      const [valid, up] = await Promise.all([
        run(['validate', '-'], { stdin: JSON.stringify({ ...doc, applications: doc.applications.map((a) => ({ ...a, application_name: 'copyapp' })) }) }),
        run(['s', 'scale', 'up', 'clientsrvr.server']),
      ]);
      assert.equal(valid.code, 0, valid.stderr);
      r = up;
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^deployed clientsrvr\.test\.server\.test\.instance\.\d+$/m);
      r = await run(['service', 'scale', 'up', 'clientsrvr.server', '2', '-o', 'json']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(json<ServiceDoc>(r.stdout).instance_list.length, 3);
      r = await run(['service', 'scale', 'down', 'clientsrvr.server', '-o', 'json']);
      assert.equal(json<ServiceDoc>(r.stdout).instance_list.length, 2);
      r = await run(['service', 'scale', 'down', 'clientsrvr.server', '9', '-o', 'json']);
      assert.equal(json<ServiceDoc>(r.stdout).instance_list.length, 0, 'never below 0');
    });

    it('service update: checked offline against the merged service, then applied', async () => {
      const r = await run(['service', 'update', 'clientsrvr.client', '-f', '-'], { stdin: '{"memory": 64, "environment": ["MODE=fast"]}' });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /updated clientsrvr\.test\.client\.test \(memory, environment\)/);
      const [inspected, bad, notObject] = await Promise.all([
        run(['service', 'inspect', 'clientsrvr.client', '-o', 'json']),
        run(['service', 'update', 'clientsrvr.client', '-f', '-'], { stdin: '{"memory": "lots", "port": 80}' }),
        run(['service', 'update', 'clientsrvr.client', '-f', '-'], { stdin: '[1,2]' }),
      ]);
      const s = json<ServiceDoc>(inspected.stdout);
      assert.equal(s.memory, 64);
      assert.deepEqual(s.environment, ['MODE=fast']);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /^ {2}memory: /m);
      assert.match(bad.stderr, /^ {2}port: .*string/m);
      assert.equal(notObject.code, 2);
    });

    it('app update: fields or an SLA; invalid input is refused with its path', async () => {
      const r = await run(['app', 'update', 'clientsrvr', '-f', fixture('app-patch.json')]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /updated application clientsrvr\.test/);
      const [shown, bad, unknown] = await Promise.all([
        run(['app', 'show', 'clientsrvr', '-o', 'json']),
        run(['app', 'update', 'clientsrvr', '-f', '-'], { stdin: '{"application_name": "no dots."}' }),
        run(['app', 'update', 'nosuch', '-f', fixture('app-patch.json')]),
      ]);
      const a = json<ApplicationDoc>(shown.stdout);
      assert.equal(a.application_desc, 'updated by the CLI test');
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /application_name: /);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /no application "nosuch"/);
    });

    it('service logs without a cluster: the root says why, exit 1', async () => {
      await run(['service', 'deploy', 'clientsrvr.client']);
      const [r, none] = await Promise.all([run(['service', 'logs', 'clientsrvr.client']), run(['service', 'logs', 'clientsrvr.server'])]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^oak: logs are not available: no cluster is connected to this root\n {2}hint: /);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /has no instances/);
    });

    it('cluster ls, cluster info and node ls with no cluster', async () => {
      const [ls, active, nodes, info, nodesOf] = await Promise.all([
        run(['cluster', 'ls']),
        run(['cluster', 'ls', '--active', '-o', 'json']),
        run(['node', 'ls']),
        run(['cluster', 'info', 'nosuch']),
        run(['node', 'ls', '--cluster', 'nosuch']),
      ]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stdout, /^no clusters/);
      assert.deepEqual(json<unknown[]>(active.stdout), []);
      assert.equal(nodes.code, 0);
      assert.match(nodes.stdout, /no workers reported/);
      assert.equal(info.code, 1);
      assert.match(info.stderr, /^oak: cluster "nosuch" does not exist\n {2}hint: list them with 'oak cluster ls'/);
      assert.equal(nodesOf.code, 1);
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
      const [plain, forced, both, flag] = await Promise.all([
        run(['instance', 'ls']),
        run(['instance', 'ls'], { env: { NO_COLOR: undefined, FORCE_COLOR: '1' } }),
        run(['instance', 'ls'], { env: { NO_COLOR: '1', FORCE_COLOR: '1' } }),
        run(['instance', 'ls', '--no-color'], { env: { NO_COLOR: undefined, FORCE_COLOR: '1' } }),
      ]);
      assert.doesNotMatch(plain.stdout, /\x1b\[/);
      assert.match(forced.stdout, /\x1b\[33mREQUESTED\x1b\[0m/, 'pending states are yellow');
      assert.doesNotMatch(both.stdout, /\x1b\[/);
      assert.doesNotMatch(flag.stdout, /\x1b\[/);
    });

    it('app delete: by name, several at once; unknown names exit 1 and delete nothing', async () => {
      let r = await run(['app', 'delete', 'batch', 'nosuch']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no application "nosuch"/);
      assert.equal((await run(['app', 'show', 'batch'])).code, 0, 'nothing deleted when one name is unknown');
      const [two, rm] = await Promise.all([run(['app', 'delete', 'batch', 'edgecam', '-o', 'json']), run(['app', 'rm', 'clientsrvr', '--yes'])]);
      assert.equal(two.code, 0, two.stderr);
      assert.equal(json<{ deleted: string[] }>(two.stdout).deleted.length, 2);
      assert.equal(rm.code, 0);
      r = await run(['app', 'ls']);
      assert.match(r.stdout, /^no applications/);
    });
  });

  describe('oak renews an expired token', { concurrency: 1 }, () => {
    let root: TestRoot;
    const home = new CliHome();
    before(async () => {
      // 2 s, not 1: a token's expiry is a whole second, so one issued late in a second with a
      // lifetime of 1 s lives a few ms only, and the refreshed one expired before the retry that
      // carried it (failed once in CI)
      root = await startTestRoot({ accessTtlSec: 2 });
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
      // until the root itself calls the access token expired (its lifetime is 1 s)
      await waitFor(async () => {
        const res = await fetch(`${root.url}/api/applications/`, { headers: { authorization: `Bearer ${first.token}` } });
        return res.status === 401 && (await res.text()).includes('OAK_TOKEN_EXPIRED');
      }, { timeoutMs: 20_000, intervalMs: 50, message: 'the access token expired at the root' });
      const ls = await home.run(['app', 'ls', '-o', 'json'], { env });
      assert.equal(ls.code, 0, ls.stderr);
      const second = JSON.parse(readFileSync(home.configPath, 'utf8')) as { token: string };
      assert.notEqual(second.token, first.token);
      assert.equal(statSync(home.configPath).mode & 0o777, 0o600);
    });
  });
});
