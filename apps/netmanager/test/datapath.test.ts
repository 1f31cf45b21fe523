/**
 * The datapath on a real kernel: two workers, each a network namespace with an uplink to a
 * shared link (a veth pair), an instance bridge with its gateway, and two instance namespaces
 * (IPv4 + IPv6) running a small TCP server/client agent; a Datapath per worker (commands run
 * through `ip netns exec <worker>`). Every namespace is named h1-<run id>-..., removed at the end
 * even when a step fails.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import type { ChildProcess, ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { shortId, waitFor, onProcessExit } from '@oak/testkit';
import { pickClosest, serviceTable, tunnelDevice } from '@oak/net';
import type { DesiredService } from '@oak/net';
import type { OverlayPeer } from '@oak/contracts';
import { Datapath } from '../src/datapath.ts';
import type { DatapathOptions } from '../src/datapath.ts';

const run = shortId(2);
const ns = (n: string): string => `h1-${run}-${n}`;
const WA = ns('wa');
const WB = ns('wb');
const PORT = 8080;

const created: string[] = [];
const agents: ChildProcessWithoutNullStreams[] = [];

function sh(...args: string[]): string {
  return execFileSync(args[0] as string, args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function shOk(...args: string[]): boolean {
  try { sh(...args); return true; } catch { return false; }
}

function removeAll(): void {
  for (const a of agents) if (a.exitCode === null) a.kill('SIGKILL');
  for (const n of created.splice(0).reverse()) shOk('ip', 'netns', 'del', n);
}
const unregister = onProcessExit(removeAll);

/** The agent inside an instance namespace: a TCP server naming itself and the peer it sees, and a client driven over stdin. */
const AGENT = `
import net from 'node:net';
import readline from 'node:readline';
const [name, port] = process.argv.slice(-2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
function lines(sock) {
  let buf = ''; const waiting = []; const ready = [];
  sock.setEncoding('utf8');
  sock.on('data', (d) => { buf += d; let i; while ((i = buf.indexOf('\\n')) >= 0) { const l = buf.slice(0, i); buf = buf.slice(i + 1); const w = waiting.shift(); if (w) w.resolve(l); else ready.push(l); } });
  const fail = (e) => { while (waiting.length) waiting.shift().reject(e); };
  sock.on('error', (e) => fail(e)); sock.on('close', () => fail(new Error('closed')));
  return () => ready.length ? Promise.resolve(ready.shift()) : new Promise((resolve, reject) => waiting.push({ resolve, reject }));
}
const within = (p, ms) => Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error('timeout')), ms))]);
const srv = net.createServer((s) => {
  const next = lines(s);
  s.write(name + ' ' + s.remoteAddress.replace(/^::ffff:/, '') + '\\n');
  (async () => { for (;;) { const l = await next(); s.write(name + ' ' + l + '\\n'); } })().catch(() => s.destroy());
});
const socks = new Map();
srv.listen(Number(port), '::', () => out({ ready: true }));
readline.createInterface({ input: process.stdin }).on('line', async (l) => {
  const c = JSON.parse(l);
  try {
    if (c.op === 'hit' || c.op === 'open') {
      const s = net.connect({ host: c.host, port: c.port });
      const next = lines(s);
      try {
        const first = await within(next(), c.ms ?? 3000);
        if (c.op === 'hit') s.destroy(); else socks.set(c.key, { s, next });
        out({ id: c.id, ok: true, line: first });
      } catch (e) { s.destroy(); throw e; }
    } else if (c.op === 'send') {
      const k = socks.get(c.key);
      k.s.write(c.text + '\\n');
      out({ id: c.id, ok: true, line: await within(k.next(), c.ms ?? 3000) });
    } else if (c.op === 'close') {
      socks.get(c.key)?.s.destroy(); socks.delete(c.key); out({ id: c.id, ok: true });
    }
  } catch (e) { out({ id: c.id, ok: false, error: String(e && e.message || e) }); }
});
`;

interface Reply { id: number; ok: boolean; line?: string; error?: string; ready?: boolean }

class Agent {
  private nextId = 1;
  private readonly waiting = new Map<number, (r: Reply) => void>();
  private readyResolve: (() => void) | undefined;
  readonly ready: Promise<void>;
  constructor(readonly netns: string, readonly name: string) {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '--input-type=module', '-e', AGENT, name, String(PORT)], { stdio: ['pipe', 'pipe', 'pipe'] });
    agents.push(child);
    this.ready = new Promise((r) => { this.readyResolve = r; });
    createInterface({ input: child.stdout }).on('line', (l) => {
      const r = JSON.parse(l) as Reply;
      if (r.ready) { this.readyResolve?.(); return; }
      this.waiting.get(r.id)?.(r);
      this.waiting.delete(r.id);
    });
    child.stderr.on('data', (d: Buffer) => process.stderr.write(`[${name}] ${d.toString()}`));
    this.child = child;
  }
  private readonly child: ChildProcessWithoutNullStreams;
  cmd(c: Record<string, unknown>): Promise<Reply> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.child.stdin.write(`${JSON.stringify({ ...c, id })}\n`);
    });
  }
  /** connects, returns the server's first line ("<name> <peer address>"), throws on failure */
  async hit(host: string, ms = 3000): Promise<string> {
    const r = await this.cmd({ op: 'hit', host, port: PORT, ms });
    if (!r.ok) throw new Error(`${this.name} -> ${host}: ${r.error}`);
    return r.line as string;
  }
  async tryHit(host: string, ms: number): Promise<string | undefined> {
    const r = await this.cmd({ op: 'hit', host, port: PORT, ms });
    return r.ok ? r.line : undefined;
  }
}

const logLines: string[] = [];
const log = { info: (m: string) => logLines.push(`info ${m}`), warn: (m: string) => logLines.push(`warn ${m}`), error: (m: string) => logLines.push(`error ${m}`) };

const workers = {
  a: { netns: WA, namespace: `h1a${run}`, subnet: '10.18.0.0/26', subnet_v6: 'fdff:18::/64', gw: '10.18.0.1', gw6: 'fdff:18::1', underlay: '192.0.2.1', port: 50103 },
  b: { netns: WB, namespace: `h1b${run}`, subnet: '10.18.0.64/26', subnet_v6: 'fdff:18:0:1::/64', gw: '10.18.0.65', gw6: 'fdff:18:0:1::1', underlay: '192.0.2.2', port: 50104 },
};
const inst = {
  a1: { w: 'a', ip: '10.18.0.2', ip6: 'fdff:18::2' },
  a2: { w: 'a', ip: '10.18.0.3', ip6: 'fdff:18::3' },
  b1: { w: 'b', ip: '10.18.0.66', ip6: 'fdff:18:0:1::2' },
  b2: { w: 'b', ip: '10.18.0.67', ip6: 'fdff:18:0:1::3' },
} as const;
type InstName = keyof typeof inst;
const agent = {} as Record<InstName, Agent>;

const peers: OverlayPeer[] = (['a', 'b'] as const).map((k) => ({
  worker_id: `worker-${k}`, subnet: workers[k].subnet, subnet_v6: workers[k].subnet_v6, host_ip: workers[k].underlay, host_port: workers[k].port,
}));

function dpOptions(k: 'a' | 'b'): DatapathOptions {
  const w = workers[k];
  return {
    namespace: w.namespace, bridge: 'br0', subnet: w.subnet, subnet_v6: w.subnet_v6, publicAddress: w.underlay, publicPort: w.port, vni: 18,
    log, exec: ['ip', 'netns', 'exec', w.netns],
  };
}

/** svc: service IP over a2 and b2, closest IP to the local one, instance IPs */
function services(k: 'a' | 'b', members: InstName[] = ['a2', 'b2']): DesiredService[] {
  const all = [
    { instance_number: 0, worker_id: 'worker-a', nsip: inst.a2.ip, nsip_v6: inst.a2.ip6, instance_ip: '10.30.0.20', instance_ip_v6: 'fdff::20' },
    { instance_number: 1, worker_id: 'worker-b', nsip: inst.b2.ip, nsip_v6: inst.b2.ip6, instance_ip: '10.30.0.21', instance_ip_v6: 'fdff::21' },
  ].filter((i) => members.includes(i.instance_number === 0 ? 'a2' : 'b2'));
  const closest = pickClosest(all, `worker-${k}`, new Map([['worker-a', 1], ['worker-b', 1]]));
  return [{
    job_name: 'app.ns.svc.ns', service_ip: '10.30.0.10', service_ip_v6: 'fdff::10', closest_ip: '10.30.0.11', closest_ip_v6: 'fdff::11',
    closest: closest ? { nsip: closest.nsip, nsip_v6: closest.nsip_v6 } : null, instances: all,
  }];
}

let dpA: Datapath;
let dpB: Datapath;

before(async () => {
  for (const k of ['a', 'b'] as const) {
    const w = workers[k];
    sh('ip', 'netns', 'add', w.netns);
    created.push(w.netns);
    sh('ip', '-n', w.netns, 'link', 'set', 'lo', 'up');
    sh('ip', '-n', w.netns, 'link', 'add', 'br0', 'type', 'bridge');
    sh('ip', '-n', w.netns, 'addr', 'add', `${w.gw}/26`, 'dev', 'br0');
    sh('ip', '-n', w.netns, 'addr', 'add', `${w.gw6}/64`, 'dev', 'br0', 'nodad');
    sh('ip', '-n', w.netns, 'link', 'set', 'br0', 'up');
  }
  sh('ip', '-n', WA, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up0', 'netns', WB);
  for (const k of ['a', 'b'] as const) {
    sh('ip', '-n', workers[k].netns, 'addr', 'add', `${workers[k].underlay}/24`, 'dev', 'up0');
    sh('ip', '-n', workers[k].netns, 'link', 'set', 'up0', 'up');
  }
  for (const [name, i] of Object.entries(inst) as [InstName, (typeof inst)[InstName]][]) {
    const w = workers[i.w];
    const n = ns(name);
    sh('ip', 'netns', 'add', n);
    created.push(n);
    sh('ip', '-n', w.netns, 'link', 'add', `v${name}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n);
    sh('ip', '-n', w.netns, 'link', 'set', `v${name}`, 'master', 'br0', 'up');
    sh('ip', '-n', n, 'link', 'set', 'lo', 'up');
    sh('ip', '-n', n, 'addr', 'add', `${i.ip}/26`, 'dev', 'eth0');
    sh('ip', '-n', n, 'addr', 'add', `${i.ip6}/64`, 'dev', 'eth0', 'nodad');
    sh('ip', '-n', n, 'link', 'set', 'eth0', 'up');
    sh('ip', '-n', n, 'route', 'add', 'default', 'via', w.gw);
    sh('ip', '-n', n, '-6', 'route', 'add', 'default', 'via', w.gw6);
    agent[name] = new Agent(n, name);
  }
  await Promise.all(Object.values(agent).map((a) => a.ready));
  dpA = new Datapath(dpOptions('a'));
  dpB = new Datapath(dpOptions('b'));
  await Promise.all([dpA.init(), dpB.init()]);
});

after(async () => {
  try {
    // stops the trace monitors even when a test failed half-way (they would keep a namespace alive)
    await Promise.allSettled([dpA?.close(), dpB?.close()]);
    removeAll();
  } finally {
    unregister();
  }
});

test('the tunnel device has the derived name, MAC, vni, port and MTU', () => {
  assert.equal(dpA.tunnelDevice, tunnelDevice(workers.a.namespace));
  assert.equal(dpA.mtu, 1450);
  const link = JSON.parse(sh('ip', '-n', WA, '-j', '-d', 'link', 'show', 'dev', dpA.tunnelDevice)) as { address: string; mtu: number; linkinfo: { info_data: Record<string, unknown> } }[];
  assert.equal(link[0]?.address, '02:0a:12:00:00:1a');
  assert.equal(link[0]?.mtu, 1450);
  assert.equal(link[0]?.linkinfo.info_data.id, 18);
  assert.equal(link[0]?.linkinfo.info_data.port, 50103);
  assert.equal(link[0]?.linkinfo.info_data.learning, false);
  assert.equal(link[0]?.linkinfo.info_data.local, '192.0.2.1');
  assert.equal(sh('ip', 'netns', 'exec', WA, 'sysctl', '-n', 'net.ipv4.ip_forward').trim(), '1');
  assert.ok(shOk('ip', 'netns', 'exec', WA, 'nft', 'list', 'table', 'inet', serviceTable(workers.a.namespace)));
});

test('peers: an instance reaches an instance on the other worker by nsip over the VXLAN (v4 and v6); applying twice changes nothing', async () => {
  const hostile = [...peers, { worker_id: 'evil', subnet: '10.18.0.0/25', host_ip: '192.0.2.9', host_port: 1 }, { worker_id: 'bad', subnet: '10.18.1.0/26', host_ip: 'not-an-ip', host_port: 5 }] as OverlayPeer[];
  const [ra, rb] = await Promise.all([dpA.setPeers(hostile), dpB.setPeers(peers)]);
  assert.deepEqual(ra.accepted, ['worker-b']);
  assert.equal(ra.problems.length, 2, ra.problems.join('\n'));
  assert.ok(ra.changes > 0 && rb.changes > 0);
  assert.equal((await dpA.setPeers(peers)).changes, 0, 'the second application changes nothing');
  assert.equal((await dpB.setPeers([...peers].reverse())).changes, 0);
  assert.match(await agent.a1.hit(inst.b1.ip), /^b1 10\.18\.0\.2$/);
  assert.match(await agent.b2.hit(inst.a2.ip), /^a2 10\.18\.0\.67$/);
  assert.equal(await agent.a1.hit(inst.b1.ip6), `b1 ${inst.a1.ip6}`);
  assert.equal(await agent.b1.hit(inst.a2.ip6), `a2 ${inst.b1.ip6}`);
});

test('a removed peer is deleted from the kernel, and comes back', async () => {
  const r = await dpA.setPeers([peers[0] as OverlayPeer]);
  assert.ok(r.changes >= 5, `route, route6, neigh, neigh6, fdb: ${r.changes}`);
  assert.doesNotMatch(sh('ip', '-n', WA, 'route', 'show', 'dev', dpA.tunnelDevice), /10\.18\.0\.64/);
  assert.equal(sh('bridge', '-n', WA, 'fdb', 'show', 'dev', dpA.tunnelDevice).trim(), '');
  assert.equal(await agent.a1.tryHit(inst.b1.ip, 300), undefined);
  assert.ok((await dpA.setPeers(peers)).changes >= 5);
  assert.match(await agent.a1.hit(inst.b1.ip), /^b1 /);
});

test('services: round robin over both workers (v4, v6), hairpin, closest, instance IPs', async () => {
  const [sa, sb] = await Promise.all([dpA.setServices(services('a')), dpB.setServices(services('b'))]);
  assert.deepEqual(sa.programmed, ['app.ns.svc.ns']);
  assert.deepEqual(sa.problems, []);
  assert.equal(sb.changed, true);
  assert.equal((await dpA.setServices(services('a'))).changed, false, 'the same set is not applied again');

  const names: string[] = [];
  for (let i = 0; i < 4; i++) names.push(await agent.a1.hit('10.30.0.10'));
  const who = names.map((l) => l.split(' ')[0]);
  assert.deepEqual(new Set(who), new Set(['a2', 'b2']), names.join(', '));
  assert.notEqual(who[0], who[1]);
  assert.equal(who[0], who[2]);
  // hairpin: the local instance sees the gateway (masqueraded), the remote one the client's nsip
  assert.ok(names.includes(`a2 ${workers.a.gw}`), names.join(', '));
  assert.ok(names.includes(`b2 ${inst.a1.ip}`), names.join(', '));

  const names6: string[] = [];
  for (let i = 0; i < 4; i++) names6.push(await agent.a1.hit('fdff::10'));
  assert.ok(names6.includes(`a2 ${workers.a.gw6}`), names6.join(', '));
  assert.ok(names6.includes(`b2 ${inst.a1.ip6}`), names6.join(', '));

  // closest: the local instance on each worker
  assert.equal(await agent.a1.hit('10.30.0.11'), `a2 ${workers.a.gw}`);
  assert.equal(await agent.b1.hit('10.30.0.11'), `b2 ${workers.b.gw}`);
  assert.equal(await agent.b1.hit('fdff::11'), `b2 ${workers.b.gw6}`);
  // instance IPs, across the tunnel
  assert.equal(await agent.b1.hit('10.30.0.20'), `a2 ${inst.b1.ip}`);
  assert.equal(await agent.a1.hit('fdff::21'), `b2 ${inst.a1.ip6}`);
});

test('an unknown virtual address is trapped and reported by watchUnknown (v4 and v6)', async () => {
  const seen = new Set<string>();
  dpA.watchUnknown((ip) => seen.add(ip));
  await waitFor(async () => {
    assert.equal(await agent.a1.tryHit('10.30.0.99', 200), undefined, 'no translation: dropped');
    return seen.has('10.30.0.99');
  }, { timeoutMs: 10_000, message: 'watchUnknown to report 10.30.0.99' });
  await waitFor(async () => {
    await agent.a2.tryHit('fdff::99', 200);
    return seen.has('fdff::99');
  }, { timeoutMs: 10_000, message: 'watchUnknown to report fdff::99' });
  assert.ok(![...seen].some((ip) => ip.startsWith('10.18.')), 'only trapped addresses are reported');
  // the monitor dies: it is restarted and reports again
  const monitor = (dpA as unknown as { monitor?: ChildProcess }).monitor;
  assert.ok(monitor?.pid);
  monitor.kill('SIGKILL');
  await waitFor(() => logLines.some((l) => l.includes('nft monitor trace ended')), { message: 'the monitor to be noticed dead' });
  await waitFor(async () => {
    await agent.a1.tryHit('10.30.0.98', 200);
    return seen.has('10.30.0.98');
  }, { timeoutMs: 10_000, message: 'the restarted monitor to report 10.30.0.98' });
});

test('a restarted Datapath adopts the kernel state and keeps an established connection', async () => {
  const open = await agent.a1.cmd({ op: 'open', key: 'p', host: '10.30.0.10', port: PORT });
  assert.ok(open.ok, open.error);
  const server = (open.line as string).split(' ')[0];
  await Promise.all([dpA.close(), dpB.close()]);
  const mid = await agent.a1.cmd({ op: 'send', key: 'p', text: 'while-stopped' });
  assert.equal(mid.line, `${server} while-stopped`);
  dpA = new Datapath(dpOptions('a'));
  dpB = new Datapath(dpOptions('b'));
  await Promise.all([dpA.init(), dpB.init()]);
  assert.ok(logLines.some((l) => l.includes('adopted')), 'the device was adopted, not re-created');
  assert.deepEqual(await dpA.kernelServices(), ['app.ns.svc.ns'], 'the services programmed before the restart');
  assert.equal((await dpA.setPeers(peers)).changes, 0, 'the kernel already held every peer');
  assert.equal((await dpB.setPeers(peers)).changes, 0);
  await Promise.all([dpA.setServices(services('a')), dpB.setServices(services('b'))]);
  const after = await agent.a1.cmd({ op: 'send', key: 'p', text: 'after-restart' });
  assert.equal(after.line, `${server} after-restart`);
  await agent.a1.cmd({ op: 'close', key: 'p' });
  assert.match(await agent.a1.hit(inst.b1.ip), /^b1 /);
});

test('an instance removed from the service gets no new connections; forgetInstance drops its flows', async () => {
  const coalesced = await Promise.all([dpA.setServices(services('a', ['a2'])), dpA.setServices(services('a', ['b2']))]);
  assert.deepEqual(coalesced.map((r) => r.programmed), [['app.ns.svc.ns'], ['app.ns.svc.ns']]);
  for (let i = 0; i < 4; i++) assert.match(await agent.a1.hit('10.30.0.10'), /^b2 /);
  for (let i = 0; i < 2; i++) assert.match(await agent.a1.hit('fdff::10'), /^b2 /);
  assert.equal(await agent.a1.tryHit('10.30.0.20', 300), undefined, "a2's instance IP is gone too");
  assert.ok(await dpA.forgetInstance(inst.a2.ip, inst.a2.ip6) >= 1, "a2's finished flows (TIME_WAIT) are deleted");
  assert.equal(await dpA.forgetInstance(inst.a2.ip, inst.a2.ip6), 0, 'none left: "0 flow entries" is no error');
  const open = await agent.a1.cmd({ op: 'open', key: 'q', host: '10.30.0.10', port: PORT });
  assert.match(open.line ?? '', /^b2 /);
  assert.match(sh('ip', 'netns', 'exec', WA, 'conntrack', '-L', '-r', inst.b2.ip), /dport=8080/);
  assert.ok(await dpA.forgetInstance(inst.b2.ip, inst.b2.ip6) >= 1);
  assert.doesNotMatch(sh('ip', 'netns', 'exec', WA, 'conntrack', '-L', '-r', inst.b2.ip), /dport=8080/);
  await agent.a1.cmd({ op: 'close', key: 'q' });
  await assert.rejects(dpA.forgetInstance('nonsense'), /not an address/);
});

test('clean() leaves no device, table, route or neighbour behind', async () => {
  const table = serviceTable(workers.a.namespace);
  await Promise.all([dpA.clean(), dpB.clean()]);
  for (const k of ['a', 'b'] as const) {
    const w = workers[k];
    assert.equal(shOk('ip', '-n', w.netns, 'link', 'show', 'dev', tunnelDevice(w.namespace)), false);
    assert.equal(shOk('ip', 'netns', 'exec', w.netns, 'nft', 'list', 'table', 'inet', serviceTable(w.namespace)), false);
    const routes = sh('ip', '-n', w.netns, 'route', 'show') + sh('ip', '-n', w.netns, '-6', 'route', 'show');
    assert.doesNotMatch(routes, /10\.18\.0\.(0|64)\/26 via|fdff:18:0:1::\/64 via|fdff:18::\/64 via/);
    assert.doesNotMatch(sh('ip', '-n', w.netns, 'neigh', 'show'), /02:0a:12/);
  }
  assert.equal(sh('ip', 'netns', 'exec', WA, 'nft', 'list', 'tables').includes(table), false);
  await assert.rejects(dpA.setPeers(peers), /closed/);
  await assert.rejects(dpA.setServices([]), /closed/);
  assert.throws(() => dpA.watchUnknown(() => undefined), /closed/);
});

test('a tunnel device removed under a running Datapath is re-created by setPeers; bad options are refused', async () => {
  const dp = new Datapath(dpOptions('a'));
  await dp.init();
  sh('ip', '-n', WA, 'link', 'del', 'dev', dp.tunnelDevice);
  assert.ok((await dp.setPeers(peers)).changes > 0);
  assert.match(sh('ip', '-n', WA, 'route', 'show', 'dev', dp.tunnelDevice), /10\.18\.0\.64\/26 via 10\.18\.0\.65/);
  await dp.clean();
  const o = dpOptions('a');
  for (const bad of [{ namespace: 'a b' }, { bridge: 'x'.repeat(16) }, { subnet: '10.18.0.1/26' }, { subnet_v6: 'nonsense' }, { publicAddress: 'host' }, { publicPort: 0 }, { vni: 1 << 24 }]) {
    assert.throws(() => new Datapath({ ...o, ...bad } as DatapathOptions), (e) => e instanceof Error && (e as { code?: string }).code === 'bad-option', JSON.stringify(bad));
  }
});
