/**
 * Hosts made of network namespaces, for e2e tests. A network is a Linux bridge living in its own
 * "switch" namespace (so nothing is added to the machine's own namespace and its firewall never sees
 * the traffic); each host is a namespace with loopback up and `eth0` (a veth whose peer is attached to
 * the bridge) addressed from the network's private /24 in 10.240.0.0/16 (.2, .3, ...).
 * With `gateway: true`, the machine's own namespace gets `.1` on a veth into the bridge, so test
 * processes outside can reach the hosts (and hosts reach them at `.1`, also their default route).
 * Every name carries a short random run id; `destroy()` removes every namespace and link it made.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onProcessExit, run, runSyncQuiet, shortId } from './util.ts';
import type { RunOptions, RunResult } from './util.ts';

export interface CreateNetworkOptions {
  /** give the machine's own namespace `.1` on this network (default false) */
  gateway?: boolean;
  /** third octet of 10.240.<n>.0/24; default: a free one claimed for this run */
  subnetIndex?: number;
}

export interface NetHost {
  name: string;
  /** network namespace name (`ip netns exec <ns> ...`) */
  ns: string;
  /** `/run/netns/<ns>`, e.g. to join it from a container */
  nsPath: string;
  ip: string;
  /** runs a command inside the namespace to completion */
  exec(cmd: string, args?: string[], opts?: RunOptions): Promise<RunResult>;
  /** spawns a process inside the namespace; it is killed by `destroy()` */
  spawn(cmd: string, args?: string[], opts?: SpawnOptions): ChildProcess;
}

export interface TestNetwork {
  name: string;
  /** bridge device name (inside the switch namespace `switchNs`) */
  bridge: string;
  switchNs: string;
  /** e.g. `10.240.17.0/24` */
  subnet: string;
  prefixLength: 24;
  /** `.1` when `gateway` is set, else undefined */
  gatewayIp: string | undefined;
  hosts: NetHost[];
  addHost(name: string): Promise<NetHost>;
  destroy(): Promise<void>;
}

const CLAIMS = join(tmpdir(), 'oak-testkit-subnets');

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** claims 10.240.<n>.0/24 for this process (a claim file per subnet; stale claims are reused) */
function claimSubnet(wanted?: number): number {
  mkdirSync(CLAIMS, { recursive: true });
  const routes = runSyncQuiet('ip', ['-4', 'route', 'show']);
  const candidates = wanted !== undefined ? [wanted] : shuffle(Array.from({ length: 250 }, (_, i) => i + 2));
  for (const n of candidates) {
    if (routes.includes(`10.240.${n}.`)) continue;
    const file = join(CLAIMS, String(n));
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      return n;
    } catch {
      let owner = 0;
      try { owner = Number(readFileSync(file, 'utf8')); } catch { /* raced */ }
      if (owner > 0 && !pidAlive(owner)) {
        rmSync(file, { force: true });
        try {
          writeFileSync(file, String(process.pid), { flag: 'wx' });
          return n;
        } catch { /* someone else took it */ }
      }
    }
  }
  throw new Error('no free 10.240.x.0/24 test subnet');
}

function shuffle<T>(a: T[]): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j] as T, a[i] as T];
  }
  return a;
}

export async function createNetwork(name: string, opts: CreateNetworkOptions = {}): Promise<TestNetwork> {
  if (!/^[a-zA-Z0-9]{1,12}$/.test(name)) throw new Error(`network name must be 1-12 letters/digits: ${name}`);
  const id = shortId(3); // 6 hex chars
  const switchNs = `oak${id}-${name}-sw`;
  const bridge = `br${id}`;
  const n = claimSubnet(opts.subnetIndex);
  const subnet = `10.240.${n}.0/24`;
  const gatewayIp = opts.gateway ? `10.240.${n}.1` : undefined;
  const gwLink = `og${id}`;
  const namespaces: string[] = [];
  const children = new Set<ChildProcess>();
  const hosts: NetHost[] = [];
  let nextHost = 2;
  let destroyed = false;

  const ip = (args: string[]): Promise<RunResult> => run('ip', args);
  const inNs = (ns: string, args: string[]): Promise<RunResult> => run('ip', ['-n', ns, ...args]);

  const syncDestroy = (): void => {
    for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
    for (const ns of namespaces) {
      for (const pid of runSyncQuiet('ip', ['netns', 'pids', ns]).split('\n').filter(Boolean)) {
        try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
      }
      runSyncQuiet('ip', ['netns', 'del', ns]);
    }
    runSyncQuiet('ip', ['link', 'del', gwLink]);
    rmSync(join(CLAIMS, String(n)), { force: true });
  };
  const unregister = onProcessExit(syncDestroy);

  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    const exits = [...children].map((c) => new Promise<void>((r) => {
      if (c.exitCode !== null || c.signalCode !== null) r();
      else { c.once('exit', () => r()); c.kill('SIGKILL'); }
    }));
    await Promise.all(exits);
    for (const ns of [...namespaces].reverse()) {
      const pids = (await run('ip', ['netns', 'pids', ns], { check: false })).stdout.split('\n').filter(Boolean);
      for (const pid of pids) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }
      await run('ip', ['netns', 'del', ns], { check: false });
    }
    // deleting the switch namespace removes the bridge and the peers; the gateway end goes with its peer
    await run('ip', ['link', 'del', gwLink], { check: false });
    rmSync(join(CLAIMS, String(n)), { force: true });
    unregister();
  };

  try {
    await ip(['netns', 'add', switchNs]);
    namespaces.push(switchNs);
    await inNs(switchNs, ['link', 'set', 'lo', 'up']);
    await inNs(switchNs, ['link', 'add', bridge, 'type', 'bridge']);
    await inNs(switchNs, ['link', 'set', bridge, 'up']);
    if (gatewayIp) {
      await ip(['link', 'add', gwLink, 'type', 'veth', 'peer', 'name', `${gwLink}p`, 'netns', switchNs]);
      await inNs(switchNs, ['link', 'set', `${gwLink}p`, 'master', bridge, 'up']);
      await ip(['addr', 'add', `${gatewayIp}/24`, 'dev', gwLink]);
      await ip(['link', 'set', gwLink, 'up']);
    }
  } catch (err) {
    await destroy();
    throw err;
  }

  const addHost = async (hostName: string): Promise<NetHost> => {
    if (destroyed) throw new Error('network destroyed');
    if (!/^[a-zA-Z0-9]{1,16}$/.test(hostName)) throw new Error(`host name must be 1-16 letters/digits: ${hostName}`);
    if (nextHost > 254) throw new Error('network full');
    const index = nextHost++;
    const ns = `oak${id}-${name}-${hostName}`;
    const hostIp = `10.240.${n}.${index}`;
    const peer = `v${id}h${index}`;
    await ip(['netns', 'add', ns]);
    namespaces.push(ns);
    await inNs(ns, ['link', 'set', 'lo', 'up']);
    await ip(['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', peer, 'netns', switchNs]);
    await inNs(switchNs, ['link', 'set', peer, 'master', bridge, 'up']);
    await inNs(ns, ['addr', 'add', `${hostIp}/24`, 'dev', 'eth0']);
    await inNs(ns, ['link', 'set', 'eth0', 'up']);
    if (gatewayIp) await inNs(ns, ['route', 'add', 'default', 'via', gatewayIp]);
    const host: NetHost = {
      name: hostName,
      ns,
      nsPath: `/run/netns/${ns}`,
      ip: hostIp,
      exec: (cmd, args = [], o) => run('ip', ['netns', 'exec', ns, cmd, ...args], o),
      spawn: (cmd, args = [], o = {}) => {
        const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], o);
        children.add(child);
        child.once('exit', () => children.delete(child));
        return child;
      },
    };
    hosts.push(host);
    return host;
  };

  return { name, bridge, switchNs, subnet, prefixLength: 24, gatewayIp, hosts, addHost, destroy };
}
