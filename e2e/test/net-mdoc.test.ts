/**
 * The overlay network end to end on an M-DOC (issue 8): one root+cluster host and two worker hosts,
 * each worker running a real NetManager next to its NodeEngine (`-n 6000`), a real VXLAN tunnel
 * between them over the hosts' network, nftables service translation and the DNS resolver on the
 * bridge gateway. One topology is shared by every check below (they run one after the other and
 * each names what it proves); reachability is probed from inside the instances' network namespaces
 * with busybox (nsenter), or by clients whose own output is read through the API.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InstanceDoc, ServiceDoc } from '@oak/contracts';
import { serviceTable, tunnelDevice } from '@oak/net';
import { run, waitFor } from '@oak/testkit';
import type { Api } from '../src/api.ts';
import { ApiError } from '../src/api.ts';
import { attachments, deploy, gatewayOf, lookupIn, overlayWorkers, pinned, url, waitAddresses, waitNetns, waitReach, getIn, whoamiServer, workerRows } from '../src/overlay.ts';
import type { WorkerRow } from '../src/overlay.ts';
import { bins, repoRoot } from '../src/procs.ts';
import { sla, sleeper } from '../src/sla.ts';
import { NET_PORT, Topology, type Worker } from '../src/topology.ts';

/**
 * a TCP client: a line every `gapMs`, each must come back, until "finish" arrives on its stdin;
 * then `tail` more lines; prints {sent, received[, error]}
 */
const ECHO_CLIENT = `
const net = require('net');
const [host, port, gapMs, tail] = process.argv.slice(1);
let sent = 0, received = 0, buf = '', target = Infinity;
process.stdin.on('data', (d) => { if (String(d).includes('finish') && target === Infinity) target = sent + Number(tail); });
const s = net.connect(Number(port), host, () => {
  console.log('connected');
  const tick = () => {
    if (sent >= target) return;
    s.write(sent + '\\n'); sent++;
    setTimeout(tick, Number(gapMs));
  };
  tick();
});
s.setTimeout(5000, () => { console.log(JSON.stringify({ sent, received, error: 'no echo for 5 s' })); process.exit(1); });
s.on('data', (d) => {
  buf += d; let i;
  while ((i = buf.indexOf('\\n')) >= 0) { buf = buf.slice(i + 1); received++; }
  if (received >= target) { console.log(JSON.stringify({ sent, received })); s.end(); process.exit(0); }
});
s.on('error', (e) => { console.log(JSON.stringify({ sent, received, error: e.message })); process.exit(1); });
s.on('close', () => { console.log(JSON.stringify({ sent, received, error: 'closed' })); process.exit(1); });
`;

/** GET `target` from `netns` `rounds` times; the bodies (undefined for a failed request) */
async function hits(netns: string, target: string, rounds: number): Promise<(string | undefined)[]> {
  const out: (string | undefined)[] = [];
  for (let i = 0; i < rounds; i++) out.push(await getIn(netns, target, 2));
  return out;
}

async function instanceLogs(api: Api, svcId: string, n = 0): Promise<string> {
  const r = await fetch(`${api.base}/api/service/${svcId}/instance/${n}/logs`, { headers: { authorization: `Bearer ${api.token}` } });
  return r.ok ? r.text() : '';
}

/** the NetManager's own view (GET /status on its local API, inside the worker's namespace, with its key) */
async function netStatus(w: Worker): Promise<{ interest: string[] }> {
  const key = readFileSync(`${w.dataDir}/keys/netmanager-${NET_PORT}.key`, 'utf8').trim();
  const r = await run('nsenter', [`--net=/run/netns/${w.host.ns}`, '--', 'curl', '-s', '--fail', '-m', '5', '-H', `Authorization: Bearer ${key}`, `http://127.0.0.1:${NET_PORT}/status`]);
  return JSON.parse(r.stdout) as { interest: string[] };
}

/** the IPv6 datapath as the kernel holds it, for a failure message (worker hosts and one instance namespace) */
async function v6Diag(workers: Worker[], instanceNs: string, target: string): Promise<string> {
  const out: string[] = [];
  const sh = async (label: string, ns: string, cmd: string): Promise<void> => {
    const r = await run('nsenter', [`--net=/run/netns/${ns}`, '--', 'sh', '-c', cmd], { check: false, timeoutMs: 10_000 });
    out.push(`--- ${label}: ${cmd}\n${(r.stdout + r.stderr).slice(0, 6000)}`);
  };
  await sh('instance', instanceNs, 'ip -6 addr; ip -6 route; ip -6 neigh');
  await sh('instance', instanceNs, `curl -g -v -s -m 3 ${target} 2>&1 | tail -20`);
  for (const w of workers) {
    await sh(w.host.ns, w.host.ns, 'ip -6 addr; ip -6 route; ip -6 neigh; bridge fdb show | grep -v permanent\ self\ 33:33; sysctl net.ipv6.conf.all.forwarding net.bridge.bridge-nf-call-ip6tables 2>&1');
    await sh(w.host.ns, w.host.ns, 'nft list ruleset 2>&1 | head -300; conntrack -L -f ipv6 2>&1 | head -40');
  }
  return out.join('\n');
}

/** a subtest that prints the processes' logs when it fails (they go with the topology) */
async function step(t: TestContext, name: string, fn: () => Promise<void>): Promise<void> {
  await t.test(name, async () => {
    try {
      await fn();
    } catch (err) {
      console.error(current?.procs.logs());
      throw err;
    }
  });
}

let current: Topology | undefined;

test('overlay on an M-DOC: service IP, instance IP, DNS, inspect, round robin, failover, release, closest, IPv6, NetManager restart, processes, the example', { timeout: 900_000 }, async (t) => {
  const topo = new Topology();
  current = topo;
  t.after(() => topo.close());
  let failed = false;
  try {
    await topo.init('nmdoc');
    const ctl = await topo.net.addHost('ctl');
    const h1 = await topo.net.addHost('w1');
    const h2 = await topo.net.addHost('w2');
    // the operator widened the service range (issue 12): Oakestra's example address is honoured
    const api = await topo.root(ctl, { OAK_EXTRA_SERVICE_RANGES: WIDE_RANGE });
    await topo.cluster(ctl, '127.0.0.1', 'edge1');
    // the two workers join side by side (containerd, NetManager, NodeEngine each)
    const [w1, w2] = await Promise.all([topo.worker(h1, ctl.ip, undefined, { net: true }), topo.worker(h2, ctl.ip, undefined, { net: true })]);
    const workers: Worker[] = [w1, w2];
    const rows = await overlayWorkers(api, ['w1', 'w2']);
    const subnet1 = rows.get('w1')?.w.net?.subnet;
    const subnet2 = rows.get('w2')?.w.net?.subnet;
    assert.ok(subnet1 && subnet2 && subnet1 !== subnet2, `two distinct worker subnets: ${subnet1} ${subnet2}`);
    const gw1 = gatewayOf(subnet1);

    // a client on w1 (sleeps; probed from its namespace), a server on w2, deployed side by side
    const srvCreated = Date.now();
    const [cli, srv] = await Promise.all([
      deploy(api, sla({ app: 'cli', svc: 'cli', code: topo.image, cmd: sleeper(3600), constraints: pinned('w1') }), 1),
      deploy(api, sla({ app: 'web', svc: 'srv', code: topo.image, cmd: whoamiServer(80), constraints: pinned('w2') }), 1),
    ]);
    const cliNs = await waitNetns(workers, cli.job_name, 0);
    const srvInst = srv.instance_list[0] as InstanceDoc;

    await step(t, '(a) a client on w1 reaches a server on w2 by service IP, instance IP and DNS name', async () => {
      const running = Date.now();
      const body = await waitReach(cliNs, url(srv.service_ip as string));
      console.log(`server RUNNING in the API (${running - srvCreated} ms after create) -> reachable by service IP from w1: ${Date.now() - running} ms`);
      assert.equal(body, srvInst.nsip, 'the answer comes from the server replica');
      assert.equal(await waitReach(cliNs, url(srvInst.instance_ip as string)), srvInst.nsip);
      const name = 'srv.test.web.test.oak';
      const a = await waitFor(async () => { const r = await lookupIn(cliNs, name, gw1); return r.length > 0 ? r : undefined; }, { timeoutMs: 15_000, message: `${name} resolved by ${gw1}` });
      assert.deepEqual(a, [srv.service_ip], `${name} -> the service IP`);
      const inst = await lookupIn(cliNs, `0.${name}`, gw1);
      assert.deepEqual(inst, [srvInst.instance_ip], `0.${name} -> instance 0's IP`);
      // the client's own resolver (resolv.conf points at its worker's gateway) resolves the name too
      const viaName = await waitFor(async () => {
        // busybox 1.35's wget crashes (SIGSEGV) with -T: the timeout comes from `timeout`
        const r = await ctrExec(w1, cli.job_name, ['timeout', '3', 'wget', '-q', '-O', '-', `http://${name}/`]);
        return r.code === 0 ? r.stdout.trim() : undefined;
      }, { timeoutMs: 15_000, message: `wget http://${name}/ inside the client container` });
      assert.equal(viaName, srvInst.nsip);
      // names outside the overlay do not resolve to overlay addresses, unknown overlay names fail
      assert.deepEqual(await lookupIn(cliNs, 'nosuch.test.web.test.oak', gw1), []);
      // a worker learns only the services its instances talk to: w1 follows the server's job, w2
      // (whose instances never call the client) does not follow the client's
      assert.ok((await netStatus(w1)).interest.includes(srv.job_name), 'w1 follows the server it talks to');
      assert.ok(!(await netStatus(w2)).interest.includes(cli.job_name), 'w2 does not follow the client\'s service');
    });

    await step(t, '(k) oak service inspect shows the addresses, oak node ls the subnets and RTTs', async () => {
      const env = { OAK_ROOT_URL: api.base, OAK_TOKEN: api.token, OAK_CONFIG: join(topo.dir.path, 'oak-cli.json'), NO_COLOR: '1' };
      const oak = async (args: string[]): Promise<string> => (await run(process.execPath, [bins.cli, ...args], { env: { ...process.env, ...env }, timeoutMs: 30_000 })).stdout;
      // the inspection and the node listing (waiting for the RTTs) side by side
      const [text, nodes] = await Promise.all([
        oak(['service', 'inspect', srv.microserviceID]),
        // RTTs come from the NetManagers' probes over the tunnel (every second here)
        waitFor(async () => {
          const list = JSON.parse(await oak(['node', 'ls', '-o', 'json'])) as WorkerRow[];
          return list.length >= 2 && list.every((w) => w.net?.subnet && (w.net.rtt ?? []).some((r) => typeof r.rtt_ms === 'number')) ? list : undefined;
        }, { timeoutMs: 30_000, intervalMs: 500, message: 'oak node ls with subnets and RTTs' }),
      ]);
      for (const v of [srv.service_ip, srv.service_ip_v6, srv.closest_ip, srvInst.instance_ip, srvInst.nsip]) assert.ok(v && text.includes(v), `inspect shows ${v}:\n${text}`);
      assert.deepEqual(new Set(nodes.map((w) => w.net?.subnet)), new Set([subnet1, subnet2]));
      const table = await oak(['node', 'ls']);
      assert.ok(table.includes(subnet1) && table.includes(subnet2), table);
    });

    let rr: ServiceDoc | undefined;
    await step(t, '(c) round robin over 3 replicas on 2 workers: every replica answers', async () => {
      rr = await deploy(api, sla({ app: 'rr', svc: 'rr', code: topo.image, cmd: whoamiServer(80), replicas: 3 }), 3);
      const on = new Set(rr.instance_list.map((i) => i.worker_id));
      assert.equal(on.size, 2, 'the 3 replicas are spread over both workers');
      const expected = new Set(rr.instance_list.map((i) => i.nsip as string));
      await waitReach(cliNs, url(rr.service_ip as string));
      const seen = new Set<string>();
      for (let i = 0; i < 30 && seen.size < 3; i++) {
        const b = await getIn(cliNs, url(rr.service_ip as string));
        assert.ok(b !== undefined, `request ${i} to the service IP answered`);
        seen.add(b);
      }
      assert.deepEqual([...seen].sort(), [...expected].sort(), 'every replica answered');
    });

    await step(t, '(d) a killed replica: no failed request 2 s later', async () => {
      assert.ok(rr, 'needs (c)');
      const victim = rr.instance_list[0] as InstanceDoc;
      const ns = await waitNetns(workers, rr.job_name, victim.instance_number);
      const pids = (await run('ip', ['netns', 'pids', ns])).stdout.split('\n').filter(Boolean);
      assert.ok(pids.length > 0, 'the replica has processes in its namespace');
      for (const p of pids) process.kill(Number(p), 'SIGKILL');
      const killed = Date.now();
      // the requirement: the dead instance leaves every interested worker's tables within 2 s
      await new Promise((r) => setTimeout(r, 2000));
      const answers = await hits(cliNs, url(rr.service_ip as string), 20);
      const failedReq = answers.filter((a) => a === undefined).length;
      console.log(`kill -> 2 s -> 20 requests: ${failedReq} failed (${Date.now() - killed} ms)`);
      assert.equal(failedReq, 0, `no failed request 2 s after the kill; answers: ${JSON.stringify(answers)}`);
    });

    await step(t, '(g) closest_ip picks the replica on the client\'s own worker', async () => {
      const near = await deploy(api, sla({ app: 'near', svc: 'near', code: topo.image, cmd: whoamiServer(80), replicas: 2 }), 2);
      assert.ok(near.closest_ip, `the service shows a closest IP: ${JSON.stringify(near)}`);
      const local = near.instance_list.find((i) => i.worker_id === rows.get('w1')?.w.id);
      assert.ok(local, 'one replica runs on w1');
      await waitReach(cliNs, url(near.closest_ip));
      const answers = await hits(cliNs, url(near.closest_ip), 10);
      assert.deepEqual(new Set(answers), new Set([local.nsip]), 'only the replica on w1 answers the closest IP');
    });

    await step(t, '(h) the IPv6 service IP and instance IP work', async () => {
      assert.ok(srv.service_ip_v6, `the service shows an IPv6 service IP: ${srv.service_ip_v6}`);
      assert.ok(srvInst.nsip_v6, `the instance shows an IPv6 namespace address: ${srvInst.nsip_v6}`);
      let body: string;
      try {
        body = await waitReach(cliNs, url(srv.service_ip_v6));
      } catch {
        // seen twice in full CI runs only, never alone: show what the kernels hold so the cause
        // can be found, then give it a minute more (the claim here is that IPv6 works at all;
        // how fast a new service is reachable is measured by (a) and by the bench)
        console.error(`(h) IPv6 service IP not reachable after 20 s; the datapath:\n${await v6Diag(workers, cliNs, url(srv.service_ip_v6))}`);
        body = await waitReach(cliNs, url(srv.service_ip_v6), 60_000);
        console.error('(h) IPv6 service IP reachable after more than 20 s');
      }
      assert.equal(body, srvInst.nsip, 'the v6 service IP reaches the server');
      assert.equal(await waitReach(cliNs, url(srvInst.instance_ip_v6 as string)), srvInst.nsip);
      const aaaa = await lookupIn(cliNs, 'srv.test.web.test.oak', gw1, 'AAAA');
      assert.deepEqual(aaaa, [srv.service_ip_v6]);
    });

    await step(t, '(l) restarting both NetManagers keeps an established connection; new connections work after', async () => {
      const echo = await deploy(api, sla({ app: 'echo', svc: 'echo', code: topo.image, cmd: ['nc', '-ll', '-p', '9000', '-e', 'cat'], constraints: pinned('w2') }), 1);
      // one TCP connection through the service IP, a line every 100 ms from before the restarts
      // until 3 s after both NetManagers are back, each echoed back
      const client = spawn('nsenter', [`--net=/run/netns/${cliNs}`, '--', process.execPath, '-e', ECHO_CLIENT, echo.service_ip as string, '9000', '100', '30'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      client.stdout.on('data', (d: Buffer) => { out += d.toString('utf8'); });
      client.stderr.on('data', (d: Buffer) => { out += d.toString('utf8'); });
      const done = new Promise<void>((r) => client.once('exit', () => r()));
      try {
        await waitFor(() => out.includes('connected'), { timeoutMs: 20_000, message: 'the echo client connected' });
        // both down at once, then both started again
        await Promise.all([w1.net?.kill('SIGTERM'), w2.net?.kill('SIGTERM')]);
        await Promise.all([w1.startNet(), w2.startNet()]);
        client.stdin.end('finish\n');
        await done;
      } finally {
        client.kill('SIGKILL');
      }
      const result = JSON.parse(out.trim().split('\n').pop() as string) as { sent: number; received: number; error?: string };
      console.log(`(l) ${result.sent} lines on one connection across both NetManager restarts`);
      assert.ok(result.sent > 30, `lines were sent during the restarts, not only after: ${out}`);
      assert.deepEqual(result, { sent: result.sent, received: result.sent }, `every line echoed on the same connection across the restarts: ${out}`);
      assert.equal(await waitReach(cliNs, url(srv.service_ip as string)), srvInst.nsip, 'a new connection after the restarts');
      assert.equal(await waitReach(cliNs, url(srvInst.instance_ip as string)), srvInst.nsip);
    });

    await step(t, '(i) a process instance reaches a container\'s service and the other way round', async () => {
      // a process server (port 8080, unprivileged) on w1 answering with a fixed text
      const pdoc = await deploy(api, sla({
        app: 'procsrv', svc: 'psrv', virtualization: 'process', code: '/bin/sh',
        cmd: ['-c', 'd=$(mktemp -d) && echo process-server > $d/index.html && exec /bin/busybox httpd -f -p 8080 -h $d'],
        constraints: pinned('w1'),
      }), 1);
      // the container client on w1 reaches it (same worker) and w2's container reaches it over the tunnel
      assert.equal(await waitReach(cliNs, url(pdoc.service_ip as string, 8080)), 'process-server');
      const srvNs = await waitNetns(workers, srv.job_name, 0);
      assert.equal(await waitReach(srvNs, url(pdoc.service_ip as string, 8080)), 'process-server', 'a container on w2 reaches the process on w1');
      // a process client on w1 calls the container server on w2 by its service IP; its output says who answered
      const [capp] = await api.createApps(sla({
        app: 'proccli', svc: 'pcli', virtualization: 'process', code: '/bin/sh',
        cmd: ['-c', `while true; do /bin/busybox timeout 3 /bin/busybox wget -q -O - http://${srv.service_ip}/ && echo; sleep 0.5; done`],
        constraints: pinned('w1'),
      }), true);
      assert.ok(capp);
      const [pcli] = await api.services(capp.applicationID);
      assert.ok(pcli);
      await api.waitStatus(pcli.microserviceID, 'RUNNING', 1, 60_000);
      await waitFor(async () => (await instanceLogs(api, pcli.microserviceID)).includes(srvInst.nsip as string), {
        timeoutMs: 30_000,
        message: 'the process client\'s output shows the container server\'s answer',
      });
    });

    await step(t, '(j) examples/client-server.json (local image) works end to end', async () => {
      const ex = JSON.parse(readFileSync(join(repoRoot, 'examples/client-server.json'), 'utf8')) as { applications: { microservices: Record<string, unknown>[] }[] };
      const ms = ex.applications[0]?.microservices ?? [];
      const server = ms.find((m) => m.microservice_name === 'server');
      const client = ms.find((m) => m.microservice_name === 'client');
      assert.ok(server && client);
      server.code = topo.image;
      server.cmd = whoamiServer(80);
      client.code = topo.image;
      const rrIp = (server.addresses as { rr_ip: string }).rr_ip;
      const [app] = await api.createApps(ex, true);
      assert.ok(app);
      const svcs = await api.services(app.applicationID);
      const s = svcs.find((x) => x.microservice_name === 'server');
      const c = svcs.find((x) => x.microservice_name === 'client');
      assert.ok(s && c);
      const sdoc = await waitAddresses(api, s.microserviceID, 2);
      assert.equal(sdoc.service_ip, rrIp, 'the requested rr_ip is the service IP');
      await api.waitStatus(c.microserviceID, 'RUNNING', 1, 60_000);
      const nsips = sdoc.instance_list.map((i) => i.nsip as string);
      // the client calls every 5 s and prints the first 80 bytes of the answer
      await waitFor(async () => {
        const log = await instanceLogs(api, c.microserviceID);
        return nsips.some((ip) => log.includes(ip)) ? log : undefined;
      }, { timeoutMs: 40_000, message: 'the client\'s log shows a server replica\'s answer' });
      // a second service asking for the same rr_ip is refused, naming the owner
      await assert.rejects(
        api.createApps(withRrIp(sla({ app: 'dup', svc: 'dup', code: topo.image, cmd: whoamiServer(80) }), rrIp), true),
        (e: unknown) => e instanceof ApiError && e.status === 409 && JSON.stringify(e.body).includes('clientsrvr'),
      );
    });

    await step(t, `(m) an rr_ip in the widened range ${WIDE_RANGE} (root --extra-service-ranges) is the service IP, reached from w1 on w2`, async () => {
      const wide = await deploy(api, withRrIp(sla({ app: 'wide', svc: 'wide', code: topo.image, cmd: whoamiServer(80), constraints: pinned('w2') }), WIDE_IP), 1);
      assert.equal(wide.service_ip, WIDE_IP, 'the requested address outside 10.30.0.0/16 is the service IP');
      // the first packet to it is trapped on w1 (the range came with the subnet), the table asked for, then translated
      assert.equal(await waitReach(cliNs, url(WIDE_IP)), wide.instance_list[0]?.nsip, 'the answer comes from the replica on w2');
      assert.ok((await netStatus(w1)).interest.includes(wide.job_name), 'w1 learned the service from the trapped address');
    });

    await step(t, '(e) undeploy releases the addresses and they are reused', async () => {
      const first = await deploy(api, sla({ app: 'tmp', svc: 'tmp', code: topo.image, cmd: whoamiServer(80), constraints: pinned('w2') }), 1);
      const addrs = { svc: first.service_ip, inst: first.instance_list[0]?.instance_ip };
      await waitReach(cliNs, url(first.service_ip as string));
      await api.call('DELETE', `/api/application/${first.applicationID}`);
      // the address leaves the client's worker: requests to it fail
      await waitFor(async () => ((await getIn(cliNs, url(first.service_ip as string), 1)) === undefined ? true : undefined), { timeoutMs: 20_000, message: 'the undeployed service IP no longer answers' });
      await waitFor(async () => (attachments(w2).some((a) => a.id.startsWith(first.job_name)) ? undefined : true), { timeoutMs: 20_000, message: 'the instance namespace removed on w2' });
      const again = await deploy(api, sla({ app: 'tmp2', svc: 'tmp', code: topo.image, cmd: whoamiServer(80), constraints: pinned('w2') }), 1);
      assert.equal(again.service_ip, addrs.svc, 'the released service IP is handed out again');
      assert.equal(again.instance_list[0]?.instance_ip, addrs.inst, 'the released instance IP is handed out again');
      assert.equal(await waitReach(cliNs, url(again.service_ip as string)), again.instance_list[0]?.nsip, 'and it reaches the new instance');
    });

    await step(t, '(f) NetManager --clean leaves nothing; a removed worker\'s subnet is released and given to the next worker', async () => {
      const h3 = await topo.net.addHost('w3');
      const w3 = await topo.worker(h3, ctl.ip, undefined, { net: true });
      const r3 = (await overlayWorkers(api, ['w3'])).get('w3');
      assert.ok(r3);
      const sub3 = r3.w.net?.subnet;
      await w3.proc.kill('SIGTERM');
      await w3.net?.kill('SIGTERM');
      // NetManager --clean removes its tunnel device, its nftables table and its state
      const dev = tunnelDevice(w3.ctd.namespace);
      const table = serviceTable(w3.ctd.namespace);
      assert.match((await run('ip', ['-n', h3.ns, 'link', 'show'])).stdout, new RegExp(dev), 'the tunnel device exists before --clean');
      await run('nsenter', [`--net=/run/netns/${h3.ns}`, '--', process.execPath, bins.netManager, '--clean', '-p', String(NET_PORT), '-c', `${w3.dataDir}/netcfg.json`, '--data-dir', `${w3.dataDir}/netmanager`, '--key-dir', `${w3.dataDir}/keys`], { timeoutMs: 30_000 });
      assert.doesNotMatch((await run('ip', ['-n', h3.ns, 'link', 'show'])).stdout, new RegExp(dev), 'no tunnel device after --clean');
      assert.doesNotMatch((await run('ip', ['netns', 'exec', h3.ns, 'nft', 'list', 'tables'])).stdout, new RegExp(table), 'no nftables table after --clean');
      assert.equal(existsSync(`${w3.dataDir}/netmanager/netmanager.json`), false, 'no state after --clean');
      await waitFor(async () => {
        try {
          await api.call('DELETE', `/api/cluster/${r3.cluster}/node/${encodeURIComponent(r3.w.id)}`);
          return true;
        } catch (e) {
          // 409 while the worker still counts as alive
          if (e instanceof ApiError && (e.status === 409 || e.status === 503)) return undefined;
          throw e;
        }
      }, { timeoutMs: 60_000, message: 'worker w3 removed' });
      await waitFor(async () => ((await workerRows(api)).some((r) => r.w.id === r3.w.id) ? undefined : true), { timeoutMs: 30_000, message: 'w3 gone from the listing' });
      const h4 = await topo.net.addHost('w4');
      await topo.worker(h4, ctl.ip, undefined, { net: true });
      const r4 = (await overlayWorkers(api, ['w4'])).get('w4');
      assert.equal(r4?.w.net?.subnet, sub3, 'the released subnet is reused by the next worker');
    });

    await topo.close();
    assert.deepEqual(await topo.leftovers(), [], 'nothing left behind: namespaces, links, tables');
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    if (failed || process.env.OAK_E2E_LOGS) console.error(topo.procs.logs());
  }
});

const WIDE_RANGE = '192.168.178.0/24';
const WIDE_IP = '192.168.178.4';

function withRrIp(body: Record<string, unknown>, rrIp: string): Record<string, unknown> {
  const apps = body.applications as { microservices: Record<string, unknown>[] }[];
  for (const a of apps) for (const m of a.microservices) m.addresses = { rr_ip: rrIp };
  return body;
}

/** runs a command inside the container of instance 0 of `job` on worker `w` (ctr tasks exec) */
async function ctrExec(w: Worker, job: string, cmd: string[]): Promise<{ code: number; stdout: string }> {
  const ids = (await w.ctd.ctr(['containers', 'ls', '-q'])).stdout.split('\n').filter((l) => l.includes(job));
  const id = ids[0];
  if (!id) return { code: 1, stdout: '' };
  const r = await w.ctd.ctr(['tasks', 'exec', '--exec-id', `e2e${Date.now()}`, id, ...cmd], { check: false });
  return { code: r.code, stdout: r.stdout };
}
