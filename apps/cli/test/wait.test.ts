/**
 * `--wait`, logs and cluster views against a real root whose instances are moved through their
 * lifecycle by a scripted cluster (FakeCluster, see helpers.ts): success, a failure with its
 * reason, a timeout with the pending reason, one-shot jobs, logs -f until Ctrl-C.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { ServiceDoc } from '@oak/contracts';
import { ADMIN_PASSWORD, CliHome, example, startTestRoot, type TestRoot } from './helpers.ts';

function slaWith(file: string, change: (ms: Record<string, unknown>) => void, name?: string): string {
  const sla = JSON.parse(readFileSync(example(file), 'utf8')) as { applications: { application_name: string; microservices: Record<string, unknown>[] }[] };
  for (const a of sla.applications) {
    if (name !== undefined) a.application_name = name;
    for (const ms of a.microservices) change(ms);
  }
  return JSON.stringify(sla);
}

describe('oak --wait and logs, with a cluster placing instances', () => {
  let root: TestRoot;
  const home = new CliHome();
  let run: (args: string[], opts?: { stdin?: string; env?: Record<string, string | undefined> }) => ReturnType<CliHome['run']>;

  before(async () => {
    root = await startTestRoot({ cluster: true, stepMs: 60 });
    run = (args, opts = {}) => home.run(args, { ...opts, env: { OAK_ROOT_URL: root.url, ...opts.env } });
    const r = await run(['login', '--password-stdin'], { stdin: ADMIN_PASSWORD });
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await root.close();
    home.cleanup();
  });

  it('app create --wait: progress lines, then every instance RUNNING, exit 0', async () => {
    const r = await run(['app', 'create', '-f', example('client-server.json'), '--wait', '--timeout', '30s']);
    assert.equal(r.code, 0, r.stderr);
    // the stream is open before the create: every state is shown, in order
    let from = -1;
    for (const state of ['CLUSTER_SCHEDULED', 'NODE_SCHEDULED', 'CREATING', 'RUNNING']) {
      const at = r.stderr.search(new RegExp(`^clientsrvr\\.test\\.server\\.test\\.instance\\.1: ${state}`, 'm'));
      assert.ok(at > from, `progress shows ${state} after the states before it:\n${r.stderr}`);
      from = at;
    }
    assert.match(r.stdout, /clientsrvr\.test\.server\.test\s+.*\s2 RUNNING$/m);
    assert.match(r.stdout, /clientsrvr\.test\.client\.test\s+.*\s1 RUNNING$/m);
    const j = await run(['instance', 'ls', '--app', 'clientsrvr']);
    assert.match(j.stdout, /^clientsrvr\.test\.server\.test\.instance\.0\s+RUNNING\s+-\s+0\s+-\s+fake\s+worker-1\s+10\.30\.\d+\.\d+\s+/m, 'IP: the virtual instance IP (after HEALTH - and RESTARTS 0)');
  });

  it('app create --wait -o json: the final documents on stdout', async () => {
    const r = await run(['app', 'create', '-f', '-', '--wait', '-o', 'json'], { stdin: slaWith('web-server.json', () => undefined) });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { services: ServiceDoc[] };
    assert.deepEqual(out.services.flatMap((s) => s.instance_list.map((i) => i.status)), ['RUNNING']);
  });

  it('a one-shot job is waited for until COMPLETED', async () => {
    const r = await run(['app', 'create', '-f', example('one-shot-job.json'), '--wait']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /batch\.jobs\.report\.jobs\.instance\.0: RUNNING/);
    assert.match(r.stderr, /batch\.jobs\.report\.jobs\.instance\.0: COMPLETED \(exit code 0\)/);
    assert.match(r.stdout, /1 COMPLETED/);
  });

  it('--wait: a failed instance prints its reason and exits 1', async () => {
    const sla = slaWith('web-server.json', (ms) => (ms.code = 'registry.local/fail/web:1'), 'broken');
    const r = await run(['app', 'create', '-f', '-', '--wait'], { stdin: sla });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^oak: broken\.default\.web\.default\.instance\.0 is FAILED: image registry\.local\/fail\/web:1 not found in the registry$/m);
    assert.match(r.stderr, /hint: see 'oak service inspect broken\.default\.web\.default'/);
    // the hint's second step: its logs, which its worker no longer keeps here: said clearly, exit 1
    const logs = await run(['service', 'logs', 'broken.web', '--instance', '0']);
    assert.equal(logs.code, 1);
    assert.equal(logs.stdout, '');
    assert.match(logs.stderr, /^oak: the logs of broken\.default\.web\.default\.instance\.0 \(ended 2026-01-01T09:00:00Z\) were dropped on worker worker-1 at 2026-01-02T09:00:00Z: this worker keeps the logs of ended instances for 24 h\n {2}hint: workers keep the logs of ended instances for a while \(NodeEngine --log-retention, default 24h\)\n$/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });

  it('--wait: a timeout exits 1 with the pending reason', async () => {
    const sla = slaWith('web-server.json', (ms) => (ms.code = 'registry.local/pending/web:1'), 'stuck');
    const started = Date.now();
    const r = await run(['app', 'create', '-f', '-', '--wait', '--timeout', '2s'], { stdin: sla });
    assert.equal(r.code, 1);
    assert.ok(Date.now() - started < 15_000);
    assert.match(r.stderr, /^oak: timed out after 2s waiting for the instances; last states:$/m);
    assert.match(r.stderr, /stuck\.default\.web\.default\.instance\.0: REQUESTED \(NoActiveClusterWithCapacity\)/);
    assert.match(r.stderr, /hint: the instances carry on/);
  });

  it('service scale --wait and service deploy --wait', async () => {
    let r = await run(['service', 'scale', 'clientsrvr.server', '3', '--wait']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^clientsrvr\.test\.server\.test: 3 RUNNING$/m);
    r = await run(['service', 'deploy', 'webdemo.web', '--wait', '-o', 'yaml']);
    assert.equal(r.code, 0, r.stderr);
    const { parse } = await import('yaml');
    assert.deepEqual((parse(r.stdout) as ServiceDoc).instance_list.map((i) => i.status), ['RUNNING', 'RUNNING']);
    r = await run(['service', 'scale', 'broken.web', '2', '--wait']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /is FAILED: image/);
  });

  it('service logs: every instance with a [n] prefix, --tail, --instance', async () => {
    let r = await run(['service', 'logs', 'clientsrvr.server']);
    assert.equal(r.code, 0, r.stderr);
    for (const n of [0, 1, 2]) assert.match(r.stdout, new RegExp(`^\\[${n}\\] log line 5 of clientsrvr\\.test\\.server\\.test\\.instance\\.${n}$`, 'm'));
    r = await run(['service', 'logs', 'clientsrvr.client', '--tail', '2']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['log line 4 of clientsrvr.test.client.test.instance.0', 'log line 5 of clientsrvr.test.client.test.instance.0']);
    r = await run(['service', 'logs', 'clientsrvr.server', '--instance', '9']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /does not exist/);
  });

  it('service logs -f follows until Ctrl-C, exit 0', async () => {
    const p = home.start(['service', 'logs', 'clientsrvr.client', '-f'], { env: { OAK_ROOT_URL: root.url } });
    await p.waitFor('log line 7 of clientsrvr.test.client.test.instance.0');
    p.kill('SIGINT');
    const r = await p.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
  });

  it('cluster ls, cluster info and node ls show what the cluster reports', async () => {
    let r = await run(['cluster', 'ls']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^NAME\s+ID\s+STATUS\s+VERSION\s+LOCATION\s+WORKERS\s+CPU FREE\/TOTAL\s+MEMORY FREE\/TOTAL \(MB\)\s+LAST SEEN$/m);
    assert.match(r.stdout, /^fake\s+[0-9a-f]{24}\s+ACTIVE\s+\S+\s+48\.1351,11\.5820\s+1\s+3\.5\/4\s+6000\/8000\s+\d+s ago$/m);
    r = await run(['cluster', 'info', 'fake']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^cpu cores free:\s+3\.5 of 4$/m);
    assert.match(r.stdout, /^edge-worker-1\s+worker-1\s+\S+\s+\S+\s+3\.5\s+6000\s+1\/2 2x NVIDIA T4 15360MB\s+container,process\s+48\.1351,11\.5820\s+10\.18\.0\.0\/26\s+worker-3 0\.8ms, /m);
    r = await run(['node', 'ls', '-o', 'json']);
    const nodes = JSON.parse(r.stdout) as { name: string; cluster_name: string; net?: { subnet: string; subnet_v6: string; host_ip: string; host_port: number; rtt: unknown[] } }[];
    assert.deepEqual(nodes.map((n) => [n.name, n.cluster_name]), [['edge-worker-1', 'fake']]);
    assert.deepEqual((nodes[0] as unknown as { gpus: { index: number }[]; gpus_free: number }).gpus.map((g) => g.index), [0, 1], 'the GPU list in JSON');
    assert.deepEqual([nodes[0]?.net?.subnet, nodes[0]?.net?.subnet_v6, nodes[0]?.net?.host_ip, nodes[0]?.net?.host_port, nodes[0]?.net?.rtt.length], ['10.18.0.0/26', 'fdff:18::/64', '127.0.0.1', 50103, 4]);
    r = await run(['node', 'ls', '--cluster', 'fake']);
    assert.match(r.stdout, /^NODE\s+ID\s+CLUSTER\s+VERSION\s+NETMANAGER\s+CPU FREE\s+MEMORY FREE \(MB\)\s+GPUS FREE\/TOTAL\s+VIRTUALIZATIONS\s+LOCATION\s+SUBNET\s+RTT$/m);
    // RTTs lowest first, a peer without an answer as '-', cut at 40 characters
    assert.match(r.stdout, /^edge-worker-1\s+worker-1\s+fake\s+\S+\s+\S+\s+.*\s10\.18\.0\.0\/26\s+worker-3 0\.8ms, worker-2 1\.2ms, a-worke…$/m);
  });

  it('service inspect shows the service\'s overlay addresses and each instance\'s', async () => {
    const r = await run(['service', 'inspect', 'clientsrvr.server']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^service ip:\s+10\.30\.\d+\.\d+$/m);
    assert.match(r.stdout, /^service ip v6:\s+fdff::[0-9a-f:]+$/m);
    assert.match(r.stdout, /^closest ip:\s+10\.30\.\d+\.\d+$/m);
    assert.match(r.stdout, /^closest ip v6:\s+fdff::[0-9a-f:]+$/m);
    assert.match(r.stdout, /^INSTANCE\s+INSTANCE IP\s+INSTANCE IPV6\s+NSIP\s+NSIP V6$/m);
    assert.match(r.stdout, /^0\s+10\.30\.\d+\.\d+\s+fdff::[0-9a-f:]+\s+10\.18\.0\.2\s+fdff:18::2$/m);
    assert.match(r.stdout, /^1\s+10\.30\.\d+\.\d+\s+fdff::[0-9a-f:]+\s+10\.18\.0\.3\s+fdff:18::3$/m);
    const j = await run(['service', 'inspect', 'clientsrvr.server', '-o', 'json']);
    const doc = JSON.parse(j.stdout) as ServiceDoc;
    assert.match(doc.service_ip ?? '', /^10\.30\./);
    assert.equal(doc.instance_list[0]?.nsip, '10.18.0.2');
    assert.match(doc.instance_list[0]?.instance_ip_v6 ?? '', /^fdff::/);
  });

  it('service inspect shows instances with their cluster and the recent transitions', async () => {
    const r = await run(['service', 'inspect', 'batch.report']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^one_shot:\s+yes$/m);
    assert.match(r.stdout, /^batch\.jobs\.report\.jobs\.instance\.0\s+COMPLETED\s+-\s+0\s+exit code 0\s+fake\s+worker-1/m);
    assert.match(r.stdout, /^TIME\s+INSTANCE\s+TRANSITION\s+DETAIL$/m);
    assert.match(r.stdout, /^\S+Z\s+0\s+COMPLETED\s+exit code 0$/m);
  });
});
