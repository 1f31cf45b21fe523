/**
 * The worker's kernel datapath of the overlay (issue 8): the VXLAN device, the routes,
 * neighbours and forwarding entries of the remote workers, and the nftables table that
 * translates service, closest and instance IPs. The NetManager only programs the kernel; every
 * packet is forwarded by the kernel (no userspace loop). What to program comes from @oak/net
 * (overlay.ts, services.ts); this class runs `ip -batch -`, `bridge -batch -`, `nft -f -`,
 * `sysctl` and `conntrack` (spawned without a shell), one change at a time.
 *
 * Restart: `init()` adopts a device that already has the right settings and leaves an existing
 * table in place, so a restarted NetManager keeps every flow running and rebuilds from the
 * kernel: `setPeers` / `setServices` only change what differs. `close()` stops the watchers and
 * leaves the datapath as it is; `clean()` removes everything the datapath made.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { OverlayPeer } from '@oak/contracts';
import {
  canonicalIp, desiredPeerState, diffPeerState, parseKernelState, serviceRuleset, serviceTable, serviceTableDelete,
  trapAddress, tunnelDevice, vtepMac, gatewayOf, formatSubnet, parseSubnet, parseSubnet6,
} from '@oak/net';
import type { DesiredService } from '@oak/net';

/**
 * Ends `nft monitor trace` processes of this network namespace whose parent is gone (init adopted
 * them): the monitors of an earlier NetManager that was killed. Best effort, Linux /proc only.
 */
function killOrphanMonitors(): void {
  let own: string;
  try {
    own = readlinkSync('/proc/self/ns/net');
  } catch {
    return;
  }
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8') !== 'nft\0monitor\0trace\0') continue;
      const ppid = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);
      if (ppid === 1 && readlinkSync(`/proc/${pid}/ns/net`) === own) process.kill(Number(pid), 'SIGKILL');
    } catch {
      /* gone meanwhile, or not ours to read */
    }
  }
}

export interface DatapathLog {
  info(msg: string, ...args: unknown[]): void;
  warn(msg: string, ...args: unknown[]): void;
  error(msg: string, ...args: unknown[]): void;
}

export interface DatapathOptions {
  /** the NodeEngine's --namespace (device and table names derive from it) */
  namespace: string;
  /** the NodeEngine's instance bridge */
  bridge: string;
  /** this worker's subnet (e.g. 10.18.0.64/26) and IPv6 subnet */
  subnet: string;
  subnet_v6: string | null;
  /** NodePublicAddress / NodePublicPort: the tunnel endpoint */
  publicAddress: string;
  publicPort: number;
  vni: number;
  /** trapped virtual ranges (default 10.30.0.0/16 and fdff::/64) */
  virtualPools?: { v4: string; v6: string };
  /** the root's extra IPv4 service ranges (--extra-service-ranges), trapped too; setServiceRanges changes them */
  serviceRanges?: readonly string[];
  log: DatapathLog;
  /**
   * a prefix for every command, e.g. `['ip', 'netns', 'exec', 'ns1']` or
   * `['nsenter', '--net=/run/netns/ns1']` (tests run several workers on one kernel)
   */
  exec?: readonly string[];
}

export type DatapathErrorCode = 'bad-option' | 'command-failed' | 'closed';

export class DatapathError extends Error {
  override readonly name = 'DatapathError';
  constructor(readonly code: DatapathErrorCode, message: string, readonly hint?: string) {
    super(hint ? `${message} (${hint})` : message);
  }
}

export interface PeersResult {
  /** commands sent to the kernel (0: it already held the desired state) */
  changes: number;
  /** worker ids programmed */
  accepted: string[];
  /** peers refused, with the reason */
  problems: string[];
}

export interface ServicesResult {
  /** false when the kernel already had exactly this rule set */
  changed: boolean;
  programmed: string[];
  problems: string[];
}

interface RunResult { code: number; stdout: string; stderr: string }

const VXLAN_OVERHEAD_V4 = 50;
const VXLAN_OVERHEAD_V6 = 70;
const RESTART_MONITOR_MS = 500;

export class Datapath {
  private readonly opts: DatapathOptions;
  private readonly dev: string;
  private readonly table: string;
  private readonly mac: string;
  private chain: Promise<unknown> = Promise.resolve();
  private mtuValue = 1450;
  private localEndpoint = false;
  private closed = false;
  private lastRules: string | undefined;
  private serviceRanges: string[];
  /** the services of the last setServices (re-rendered when the service ranges change) */
  private lastServices: readonly DesiredService[] | undefined;
  private svcPending: { services: readonly DesiredService[]; waiters: { resolve: (r: ServicesResult) => void; reject: (e: unknown) => void }[] } | undefined;
  private svcRunning = false;
  private monitor: ChildProcess | undefined;
  private monitorTimer: NodeJS.Timeout | undefined;
  private readonly unknownCallbacks: ((ip: string) => void)[] = [];

  constructor(opts: DatapathOptions) {
    if (typeof opts.namespace !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/.test(opts.namespace)) {
      throw new DatapathError('bad-option', `namespace ${JSON.stringify(String(opts.namespace).slice(0, 64))} is not a NodeEngine namespace`, 'letters, digits, - and _');
    }
    if (typeof opts.bridge !== 'string' || !/^[A-Za-z0-9_.-]{1,15}$/.test(opts.bridge)) throw new DatapathError('bad-option', `bridge ${JSON.stringify(String(opts.bridge).slice(0, 20))} is not a device name`);
    try { parseSubnet(opts.subnet); } catch (e) { throw new DatapathError('bad-option', `subnet: ${(e as Error).message}`); }
    if (opts.subnet_v6 !== null) {
      try { parseSubnet6(opts.subnet_v6); } catch (e) { throw new DatapathError('bad-option', `subnet_v6: ${(e as Error).message}`); }
    }
    if (!canonicalIp(opts.publicAddress)) throw new DatapathError('bad-option', `public address ${JSON.stringify(String(opts.publicAddress).slice(0, 64))} is not an IP address`, 'NodePublicAddress in netcfg.json');
    if (!Number.isInteger(opts.publicPort) || opts.publicPort < 1 || opts.publicPort > 65535) throw new DatapathError('bad-option', `public port ${opts.publicPort} is not 1..65535`, 'NodePublicPort in netcfg.json');
    if (!Number.isInteger(opts.vni) || opts.vni < 1 || opts.vni > 0xffffff) throw new DatapathError('bad-option', `vni ${opts.vni} is not 1..16777215`);
    this.opts = { ...opts, publicAddress: canonicalIp(opts.publicAddress)?.ip as string };
    try {
      const r = opts.serviceRanges ?? [];
      if (!Array.isArray(r) || r.length > 15) throw new Error('give at most 15 IPv4 subnets');
      this.serviceRanges = r.map((c) => formatSubnet(parseSubnet(c)));
    } catch (e) { throw new DatapathError('bad-option', `service ranges: ${(e as Error).message}`); }
    this.dev = tunnelDevice(opts.namespace);
    this.table = serviceTable(opts.namespace);
    this.mac = vtepMac(opts.subnet);
  }

  /** the MTU for instance veths: the uplink's minus the VXLAN encapsulation (known after init) */
  get mtu(): number { return this.mtuValue; }
  get tunnelDevice(): string { return this.dev; }
  get tableName(): string { return this.table; }
  get gateway(): string { return gatewayOf(this.opts.subnet); }

  // ------------------------------------------------------------------ commands

  private run(cmd: string, args: readonly string[], input?: string): Promise<RunResult> {
    const argv = [...(this.opts.exec ?? []), cmd, ...args];
    return new Promise((resolve) => {
      const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
      child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
      child.on('error', (err) => resolve({ code: -1, stdout, stderr: err.message }));
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin.on('error', () => undefined);
      child.stdin.end(input ?? '');
    });
  }

  private async must(cmd: string, args: readonly string[], input?: string, hint?: string): Promise<string> {
    const r = await this.run(cmd, args, input);
    if (r.code !== 0) {
      const detail = (r.stderr || r.stdout).trim().slice(0, 2000) || `exit ${r.code}`;
      throw new DatapathError('command-failed', `${cmd} ${args.join(' ')}: ${detail}`, hint);
    }
    return r.stdout;
  }

  /** one kernel change at a time */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  // ------------------------------------------------------------------ init

  /**
   * Creates (or adopts) the VXLAN device, turns on forwarding, and creates the table when it
   * does not exist (an existing one is left as it is until the next setServices).
   */
  init(): Promise<void> {
    return this.serial(async () => {
      if (this.closed) throw new DatapathError('closed', 'the datapath is closed');
      const { uplinkMtu, local } = await this.uplink();
      const overhead = this.opts.publicAddress.includes(':') ? VXLAN_OVERHEAD_V6 : VXLAN_OVERHEAD_V4;
      this.mtuValue = Math.max(576, Math.min(65535, uplinkMtu - overhead));
      this.localEndpoint = local;
      await this.ensureDevice(local);
      const sysctls = ['net.ipv4.ip_forward=1'];
      if (this.opts.subnet_v6 !== null) sysctls.push('net.ipv6.conf.all.forwarding=1');
      await this.must('sysctl', ['-q', '-w', ...sysctls], undefined, 'the NetManager must run as root');
      const exists = await this.run('nft', ['list', 'table', 'inet', this.table]);
      if (exists.code !== 0) {
        await this.applyRules([]);
        this.opts.log.info(`datapath: table inet ${this.table} created`);
      } else {
        this.opts.log.info(`datapath: table inet ${this.table} adopted (replaced at the next service change)`);
      }
    });
  }

  /** the uplink's MTU and whether the public address is one of ours (then it is the VXLAN source) */
  private async uplink(): Promise<{ uplinkMtu: number; local: boolean }> {
    const addrs = await this.run('ip', ['-j', 'addr', 'show']);
    let list: { ifname?: string; mtu?: number; addr_info?: { local?: string }[] }[] = [];
    try { list = JSON.parse(addrs.stdout || '[]') as typeof list; } catch { list = []; }
    const own = list.find((l) => (l.addr_info ?? []).some((a) => canonicalIp(a.local)?.ip === this.opts.publicAddress));
    if (own && typeof own.mtu === 'number' && own.ifname !== 'lo') return { uplinkMtu: own.mtu, local: true };
    if (own) return { uplinkMtu: 1500, local: true };
    // behind NAT: the public address is not on this host; the uplink is the default route's device
    const def = await this.run('ip', ['-j', this.opts.publicAddress.includes(':') ? '-6' : '-4', 'route', 'show', 'default']);
    let dev: string | undefined;
    try { dev = (JSON.parse(def.stdout || '[]') as { dev?: string }[])[0]?.dev; } catch { dev = undefined; }
    const mtu = list.find((l) => l.ifname === dev)?.mtu;
    this.opts.log.warn(`datapath: NodePublicAddress ${this.opts.publicAddress} is not an address of this host; the tunnel leaves from the routed source address`);
    return { uplinkMtu: typeof mtu === 'number' ? mtu : 1500, local: false };
  }

  private async ensureDevice(local: boolean): Promise<void> {
    const r = await this.run('ip', ['-j', '-d', 'link', 'show', 'dev', this.dev]);
    let current: { address?: string; mtu?: number; flags?: string[]; linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> } } | undefined;
    if (r.code === 0) {
      try { current = (JSON.parse(r.stdout) as (typeof current)[])[0]; } catch { current = undefined; }
    }
    if (current) {
      const d = current.linkinfo?.info_data ?? {};
      const same = current.linkinfo?.info_kind === 'vxlan' && d.id === this.opts.vni && d.port === this.opts.publicPort
        && d.learning === false && (local ? canonicalIp(d.local)?.ip === this.opts.publicAddress : d.local === undefined);
      if (!same) {
        this.opts.log.warn(`datapath: ${this.dev} exists with other settings; re-creating it`);
        await this.must('ip', ['link', 'del', 'dev', this.dev]);
        current = undefined;
      } else {
        this.opts.log.info(`datapath: ${this.dev} adopted`);
      }
    }
    if (!current) {
      const args = ['link', 'add', this.dev, 'type', 'vxlan', 'id', String(this.opts.vni), 'dstport', String(this.opts.publicPort)];
      if (local) args.push('local', this.opts.publicAddress);
      args.push('nolearning');
      await this.must('ip', args, undefined, 'is the vxlan kernel module available, and is NodePublicPort free?');
      this.opts.log.info(`datapath: ${this.dev} created (vni ${this.opts.vni}, port ${this.opts.publicPort}, mtu ${this.mtuValue})`);
    }
    if (current?.address !== this.mac || current?.mtu !== this.mtuValue || !current?.flags?.includes('UP')) {
      await this.must('ip', ['link', 'set', 'dev', this.dev, 'address', this.mac, 'mtu', String(this.mtuValue), 'up']);
    }
  }

  // ------------------------------------------------------------------ peers

  /**
   * Programs routes, neighbours and forwarding entries for `peers` (all overlay workers; our own
   * entry is skipped) and removes those of workers no longer listed. Refused peers are logged
   * and skipped.
   */
  setPeers(peers: readonly OverlayPeer[]): Promise<PeersResult> {
    return this.serial(async () => {
      if (this.closed) throw new DatapathError('closed', 'the datapath is closed');
      const want = desiredPeerState(
        { subnet: this.opts.subnet, subnet_v6: this.opts.subnet_v6, host_ip: this.opts.publicAddress, host_port: this.opts.publicPort },
        peers,
      );
      for (const p of want.problems) this.opts.log.warn(`datapath: ${p}`);
      let current: ReturnType<typeof parseKernelState>;
      try {
        current = await this.kernelPeers();
      } catch (e) {
        if (!/does not exist|Cannot find device/i.test((e as Error).message)) throw e;
        // someone removed the device under us: make it again, with nothing on it
        this.opts.log.warn(`datapath: ${this.dev} disappeared; re-creating it`);
        await this.ensureDevice(this.localEndpoint);
        current = await this.kernelPeers();
      }
      const cmds = diffPeerState(current, want.state, this.dev);
      if (cmds.bridge.length > 0) await this.must('bridge', ['-force', '-batch', '-'], `${cmds.bridge.join('\n')}\n`);
      if (cmds.ip.length > 0) await this.must('ip', ['-force', '-batch', '-'], `${cmds.ip.join('\n')}\n`);
      const changes = cmds.ip.length + cmds.bridge.length;
      if (changes > 0) this.opts.log.info(`datapath: ${changes} peer changes (${want.accepted.length} peers)`);
      return { changes, accepted: want.accepted, problems: want.problems };
    });
  }

  private async kernelPeers(): Promise<ReturnType<typeof parseKernelState>> {
    const [r4, r6, n, f] = await Promise.all([
      this.must('ip', ['-j', '-4', 'route', 'show', 'dev', this.dev]),
      this.must('ip', ['-j', '-6', 'route', 'show', 'dev', this.dev]),
      this.must('ip', ['-j', 'neigh', 'show', 'dev', this.dev]),
      this.must('bridge', ['-j', 'fdb', 'show', 'dev', this.dev]),
    ]);
    return parseKernelState({ routes: [r4, r6], neighs: [n], fdb: f }, this.opts.publicPort);
  }

  // ------------------------------------------------------------------ services

  /**
   * Job names with a round-robin rule in the kernel's table now (from the rules' comments; a
   * restarted NetManager asks the cluster for these tables again). Empty when there is no table.
   */
  kernelServices(): Promise<string[]> {
    return this.serial(async () => {
      const r = await this.run('nft', ['list', 'table', 'inet', this.table]);
      if (r.code !== 0) return [];
      const jobs = new Set<string>();
      for (const m of r.stdout.matchAll(/^\s*dnat ip6? to numgen .* comment "([^"]*)"\s*$/gm)) jobs.add(m[1] as string);
      return [...jobs].sort();
    });
  }

  /**
   * Replaces the table's translations with `services` (one `nft -f` per change; calls that
   * arrive while one is applied are coalesced: only the latest set is applied next). Resolves
   * when a set at least as new as this one is in the kernel.
   */
  setServices(services: readonly DesiredService[]): Promise<ServicesResult> {
    this.lastServices = services;
    return new Promise((resolve, reject) => {
      if (this.closed) { reject(new DatapathError('closed', 'the datapath is closed')); return; }
      if (!this.svcPending) this.svcPending = { services, waiters: [] };
      this.svcPending.services = services;
      this.svcPending.waiters.push({ resolve, reject });
      if (!this.svcRunning) void this.serviceLoop();
    });
  }

  /**
   * The root's extra IPv4 service ranges: traffic to them that has no translation yet is trapped
   * (and asked for) like traffic to 10.30.0.0/16. Re-applies the rules when they changed; a bad
   * CIDR is a DatapathError and changes nothing.
   */
  setServiceRanges(ranges: readonly string[]): Promise<ServicesResult | undefined> {
    let norm: string[];
    try {
      if (!Array.isArray(ranges) || ranges.length > 15) throw new Error('give at most 15 IPv4 subnets');
      norm = ranges.map((r) => formatSubnet(parseSubnet(r)));
    } catch (e) {
      return Promise.reject(new DatapathError('bad-option', `service ranges: ${(e as Error).message}`));
    }
    if (norm.join(',') === this.serviceRanges.join(',')) return Promise.resolve(undefined);
    this.serviceRanges = norm;
    return this.setServices(this.lastServices ?? []);
  }

  private async serviceLoop(): Promise<void> {
    this.svcRunning = true;
    try {
      while (this.svcPending) {
        const job = this.svcPending;
        this.svcPending = undefined;
        if (this.closed) {
          for (const w of job.waiters) w.reject(new DatapathError('closed', 'the datapath was closed before this service change was applied'));
          continue;
        }
        try {
          const r = await this.serial(() => this.applyRules(job.services));
          for (const w of job.waiters) w.resolve(r);
        } catch (e) {
          for (const w of job.waiters) w.reject(e);
        }
      }
    } finally {
      this.svcRunning = false;
    }
  }

  private async applyRules(services: readonly DesiredService[]): Promise<ServicesResult> {
    const rules = serviceRuleset(services, {
      table: this.table, bridge: this.opts.bridge, subnet: this.opts.subnet, subnet_v6: this.opts.subnet_v6,
      ...(this.opts.virtualPools ? { virtualPools: this.opts.virtualPools } : {}),
      ...(this.serviceRanges.length > 0 ? { extraVirtual4: this.serviceRanges } : {}),
    });
    for (const p of rules.problems) this.opts.log.warn(`datapath: ${p}`);
    if (rules.text === this.lastRules) return { changed: false, programmed: rules.programmed, problems: rules.problems };
    await this.must('nft', ['-f', '-'], rules.text, 'is nftables usable here?');
    this.lastRules = rules.text;
    return { changed: true, programmed: rules.programmed, problems: rules.problems };
  }

  // ------------------------------------------------------------------ conntrack

  /** Drops the conntrack entries of an instance that left (to, from, and replies from its nsip). */
  forgetInstance(nsip: string, nsip6?: string | null): Promise<number> {
    const targets: { ip: string; family: 4 | 6 }[] = [];
    const a = canonicalIp(nsip);
    if (a?.family === 4) targets.push(a);
    const b = nsip6 ? canonicalIp(nsip6) : undefined;
    if (b?.family === 6) targets.push(b);
    if (targets.length === 0) return Promise.reject(new DatapathError('bad-option', `nsip ${JSON.stringify(String(nsip).slice(0, 64))} is not an address`));
    return this.serial(async () => {
      let deleted = 0;
      for (const t of targets) {
        for (const flag of ['-d', '-s', '-r']) {
          const r = await this.run('conntrack', ['-D', '-f', t.family === 4 ? 'ipv4' : 'ipv6', flag, t.ip]);
          const m = /(\d+) flow entr(?:y|ies) ha(?:s|ve) been deleted/.exec(r.stderr + r.stdout);
          if (m) { deleted += Number(m[1]); continue; }
          if (r.code !== 0) this.opts.log.warn(`datapath: conntrack -D ${flag} ${t.ip}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
        }
      }
      return deleted;
    });
  }

  // ------------------------------------------------------------------ unknown virtual addresses

  /**
   * Calls `cb` with the destination of each packet the trap caught (a virtual address this
   * worker has no translation for; at most 20 packets a second per family are traced). The first
   * call starts `nft monitor trace`; it is restarted when it dies, until close().
   */
  watchUnknown(cb: (ip: string) => void): void {
    if (this.closed) throw new DatapathError('closed', 'the datapath is closed');
    this.unknownCallbacks.push(cb);
    if (!this.monitor && !this.monitorTimer) this.startMonitor();
  }

  private startMonitor(): void {
    this.monitorTimer = undefined;
    if (this.closed) return;
    // a NetManager killed before (SIGKILL, a crash) left its monitor behind as an orphan: end it
    if (this.opts.exec === undefined) killOrphanMonitors();
    const argv = [...(this.opts.exec ?? []), 'nft', 'monitor', 'trace'];
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.monitor = child;
    const rl = createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      const ip = trapAddress(line, this.table);
      if (ip === undefined) return;
      for (const cb of this.unknownCallbacks) {
        try { cb(ip); } catch (e) { this.opts.log.error(`datapath: unknown-address callback failed: ${(e as Error).message}`); }
      }
    });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => { if (err.length < 2000) err += d; });
    const restart = (why: string): void => {
      if (this.monitor !== child) return;
      this.monitor = undefined;
      rl.close();
      if (this.closed) return;
      this.opts.log.warn(`datapath: nft monitor trace ended (${why}); restarting`);
      this.monitorTimer = setTimeout(() => this.startMonitor(), RESTART_MONITOR_MS);
      this.monitorTimer.unref?.();
    };
    child.on('error', (e) => restart(e.message));
    child.on('close', (code, signal) => restart(`${signal ?? `exit ${code}`}${err ? `: ${err.trim().slice(0, 300)}` : ''}`));
  }

  private stopMonitor(): void {
    if (this.monitorTimer) clearTimeout(this.monitorTimer);
    this.monitorTimer = undefined;
    const m = this.monitor;
    this.monitor = undefined;
    if (m && m.exitCode === null && m.signalCode === null) m.kill('SIGTERM');
  }

  // ------------------------------------------------------------------ shutdown

  /** Stops the watchers; the device, routes and table stay so flows keep running. */
  async close(): Promise<void> {
    this.closed = true;
    this.stopMonitor();
    this.unknownCallbacks.length = 0;
    await this.chain;
  }

  /** Removes the device (with its routes, neighbours and forwarding entries) and the table. */
  async clean(): Promise<void> {
    this.closed = true;
    this.stopMonitor();
    await this.chain;
    const link = await this.run('ip', ['link', 'show', 'dev', this.dev]);
    if (link.code === 0) await this.must('ip', ['link', 'del', 'dev', this.dev]);
    await this.must('nft', ['-f', '-'], serviceTableDelete(this.table));
    this.lastRules = undefined;
    this.opts.log.info(`datapath: ${this.dev} and table inet ${this.table} removed`);
  }
}
