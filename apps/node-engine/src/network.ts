/**
 * Every instance in its own network namespace: the shell side of `@oak/net`. A worker bridge
 * (`oak0` for namespace `oak`) with the gateway address, one namespace + veth pair per instance
 * (`eth0` inside, with the instance's address and a default route via the bridge), outbound NAT,
 * the instance's `port` mappings as DNAT to its own address, and input rules that refuse every new
 * connection from an instance to the node (see packages/net/src/rules.ts).
 *
 * State: `<dataDir>/net/<instance id>.json` (address, namespace, mappings) so that a restarted
 * NodeEngine re-adopts the namespaces of the instances it re-adopts, and removes the others. A
 * namespace of this plan with no state (a crash between its creation and the state file, or a
 * spare) is removed at start.
 *
 * Speed: creating a namespace and a veth pair costs two `ip` runs (~10-20 ms). One spare
 * namespace, fully wired, is kept ready and handed to the next instance; it is refilled in the
 * background, so a deploy usually costs no `ip` run at all (and one `nft` run when it maps ports).
 *
 * The overlay (issue 8, with a NetManager): the bridge is built on the worker subnet the
 * NetManager gave (`subnet`, plus `subnetV6` and `mtu`), every namespace gets the IPv4 and the
 * IPv6 address of the same host index with default routes via both gateways and the MTU on both
 * veth ends, the rules get the `overlay` option (see @oak/net rules.ts), and with a resolver
 * (`dns`) the NodeEngine writes `<dataDir>/net/resolv.conf` (0644) that the runtimes show
 * instances as /etc/resolv.conf.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { renameSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, readFile, readdir, rename, rm, writeFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import type { PortMapping } from '@oak/contracts';
import { addressV6, allocateAddress, bridgePlan, inPlan, isPlanNetns, mappingProblem, netnsName, nftDeleteTable, nftRuleset, overlaps, parseSubnet, vethName } from '@oak/net';
import type { BridgePlan, OverlayRules, PortRule } from '@oak/net';
import type { InstanceAddresses } from '@oak/contracts';
import type { EngineLog } from './config.ts';

export type IsolationMode = 'auto' | 'on' | 'off';

export const NETNS_DIR = '/run/netns';
/** one NodeEngine per plan on a kernel: `<LOCK_DIR>/net-<tag>.pid` */
export const LOCK_DIR = '/run/oak';

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** delay between an instance's start and making the next spare (lets its RUNNING report go out first) */
const REFILL_DELAY_MS = 30;

export interface NetworkOptions {
  namespace: string;
  dataDir: string;
  /** the bridge's subnet (default from the namespace, see @oak/net) */
  subnet?: string | undefined;
  log: EngineLog;
  /** spare namespaces kept ready (default 1) */
  spares?: number;
  /** the overlay's IPv6 subnet of the bridge (a /64 from the NetManager) */
  subnetV6?: string | null | undefined;
  /** MTU of the instance veths */
  mtu?: number | undefined;
  /** the overlay's rule additions (tunnel device, pools) */
  overlay?: OverlayRules | undefined;
  /** the resolver instances use (the gateway): written to `<dataDir>/net/resolv.conf` */
  dns?: string | null | undefined;
}

export interface Attachment {
  id: string;
  ip: string;
  netns: string;
  /** `/run/netns/<netns>` */
  path: string;
  ports: PortRule[];
  /** the namespace's IPv6 address (overlay with IPv6 only) */
  ip6?: string | undefined;
  /** what the NetManager is told about the instance (kept so a restart can announce it again) */
  job_name?: string | undefined;
  instance_number?: number | undefined;
  overlay?: InstanceAddresses | undefined;
}

export interface AttachMeta {
  job_name: string;
  instance_number: number;
  overlay?: InstanceAddresses | undefined;
}

interface Spare { ip: string; netns: string }

interface RunResult { code: number; stdout: string; stderr: string }

function run(cmd: string, args: string[], input?: string): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
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

async function must(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await run(cmd, args, input);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${(r.stderr || r.stdout).trim() || `exit ${r.code}`}`);
  return r.stdout;
}

/** Can this machine isolate instances? undefined when yes, else the reason. */
export async function isolationProblem(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'the NodeEngine does not run as root (network namespaces, veth pairs and nftables need it)';
  const ip = await run('ip', ['-V']);
  if (ip.code !== 0) return '`ip` (iproute2) is not installed';
  const nft = await run('nft', ['list', 'tables']);
  if (nft.code !== 0) return `nftables is not usable: ${(nft.stderr || 'nft not found').trim()}`;
  const ns = await run('nsenter', ['--version']);
  if (ns.code !== 0) return '`nsenter` (util-linux) is not installed';
  return undefined;
}

/** The mappings of an SLA `port` list on an instance address: `80` maps host 80 to 80. */
export function portRules(id: string, ip: string, ports: readonly PortMapping[]): PortRule[] {
  return ports.map((p) => ({ instance: id, ip, hostPort: p.hostPort ?? p.containerPort, containerPort: p.containerPort, protocol: p.protocol }));
}

async function hostPortFree(port: number, protocol: 'tcp' | 'udp'): Promise<boolean> {
  return new Promise((resolve) => {
    if (protocol === 'udp') {
      const s = createSocket('udp4');
      s.once('error', () => { s.close(); resolve(false); });
      s.bind(port, '0.0.0.0', () => s.close(() => resolve(true)));
      return;
    }
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '0.0.0.0', exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

export class InstanceNetworks {
  readonly plan: BridgePlan;
  readonly #dir: string;
  readonly #log: EngineLog;
  readonly #attached = new Map<string, Attachment>();
  readonly #spares: Spare[] = [];
  readonly #spareTarget: number;
  /** addresses being set up (not yet in #attached or #spares) */
  readonly #pending = new Set<string>();
  #chain: Promise<unknown> = Promise.resolve();
  #refilling: Promise<void> | undefined;
  #closed = false;

  readonly #overlay: OverlayRules | undefined;
  readonly #dns: string | undefined;

  constructor(opts: NetworkOptions) {
    this.plan = bridgePlan(opts.namespace, opts.subnet, { subnetV6: opts.subnetV6, mtu: opts.mtu });
    this.#dir = join(opts.dataDir, 'net');
    this.#log = opts.log;
    this.#spareTarget = opts.spares ?? 1;
    this.#overlay = opts.overlay;
    if (opts.dns !== undefined && opts.dns !== null) {
      if (opts.dns !== this.plan.gateway && opts.dns !== this.plan.gateway6) throw new Error(`the resolver ${opts.dns} is not the bridge gateway ${this.plan.gateway}`);
      this.#dns = opts.dns;
    }
    // the rules are checked now (a bad overlay option fails before anything is created)
    nftRuleset({ plan: this.plan, mappings: [], overlay: this.#overlay });
  }

  /** `<dataDir>/net/resolv.conf` when instances get the worker's resolver, else undefined */
  get resolvConf(): string | undefined {
    return this.#dns === undefined ? undefined : join(this.#dir, 'resolv.conf');
  }

  /** every attachment (announcing them to a NetManager again) */
  list(): Attachment[] {
    return [...this.#attached.values()];
  }

  /** one change of namespaces or rules at a time */
  #serial<T>(op: () => Promise<T>): Promise<T> {
    const next = this.#chain.then(op, op);
    this.#chain = next.catch(() => undefined);
    return next;
  }

  describe(): string {
    const v6 = this.plan.gateway6 !== undefined && this.plan.subnet6 !== undefined ? ` ${this.plan.gateway6}/${this.plan.subnet6.prefix}` : '';
    const mtu = this.plan.mtu !== undefined ? ` mtu ${this.plan.mtu}` : '';
    return `bridge ${this.plan.bridge} ${this.plan.gateway}/${this.plan.subnet.prefix}${v6}${mtu}, nftables table ip ${this.plan.table}${this.#overlay !== undefined ? ` (overlay via ${this.#overlay.tunnelDevice})` : ''}`;
  }

  /** Creates the bridge and the rule set, loads the instances' state. */
  async init(): Promise<void> {
    await this.#lock();
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const { plan } = this;
    const conflict = await routeConflict(plan);
    if (conflict !== undefined) throw new Error(`${conflict}; choose another with --bridge-subnet`);
    const exists = (await run('ip', ['link', 'show', 'dev', plan.bridge])).code === 0;
    const cmds = exists ? [] : [`link add ${plan.bridge} type bridge`];
    // a fixed MAC: else the bridge follows the lowest MAC of its ports as instances come and go
    cmds.push(`link set ${plan.bridge} address ${plan.mac}`);
    cmds.push(`addr replace ${plan.gateway}/${plan.subnet.prefix} dev ${plan.bridge}`, `link set ${plan.bridge} up`);
    if (exists) {
      // another plan's addresses (the default subnet before the NetManager's) go
      for (const a of await bridgeAddresses(plan.bridge)) {
        if (a !== `${plan.gateway}/${plan.subnet.prefix}` && a !== `${plan.gateway6 ?? ''}/${plan.subnet6?.prefix ?? ''}`) cmds.push(`addr del ${a} dev ${plan.bridge}`);
      }
    }
    await writeFile('/proc/sys/net/ipv4/ip_forward', '1');
    if (plan.gateway6 !== undefined && plan.subnet6 !== undefined) {
      await writeFile(`/proc/sys/net/ipv6/conf/${plan.bridge}/disable_ipv6`, '0').catch(() => undefined);
      cmds.push(`addr replace ${plan.gateway6}/${plan.subnet6.prefix} dev ${plan.bridge} nodad`);
    }
    await must('ip', ['-batch', '-'], `${cmds.join('\n')}\n`);
    // DNAT of localhost:<host port> into the bridge (the quickstart's `curl localhost:8080`)
    await writeFile(`/proc/sys/net/ipv4/conf/${plan.bridge}/route_localnet`, '1');
    if (plan.gateway6 === undefined) {
      // instances are IPv4 only: no IPv6 (not even link-local) on the bridge (the ip6 table drops it too)
      await writeFile(`/proc/sys/net/ipv6/conf/${plan.bridge}/disable_ipv6`, '1').catch(() => undefined);
    } else {
      // instances' IPv6 towards the overlay (the ip6 table applies the IPv4 policy)
      await writeFile('/proc/sys/net/ipv6/conf/all/forwarding', '1');
    }
    if (this.#dns !== undefined) {
      const tmp = join(this.#dir, 'resolv.conf.tmp');
      await writeFile(tmp, resolvConfText(this.#dns), { mode: 0o644 });
      await chmod(tmp, 0o644);
      await rename(tmp, join(this.#dir, 'resolv.conf'));
    } else {
      await rm(join(this.#dir, 'resolv.conf'), { force: true });
    }

    for (const name of await readdir(this.#dir).catch(() => [] as string[])) {
      if (!name.endsWith('.json')) continue;
      try {
        const a = JSON.parse(await readFile(join(this.#dir, name), 'utf8')) as Attachment;
        // an attachment of another subnet (the plan changed) is not ours: its namespace goes as stale
        if (typeof a.id === 'string' && typeof a.ip === 'string' && inPlan(plan, a.ip) && a.netns === netnsName(plan, a.ip) && Array.isArray(a.ports)) {
          a.ip6 = addressV6(plan, a.ip);
          this.#attached.set(a.id, a);
        }
      } catch {
        /* unreadable: its namespace is removed as stale below */
      }
    }
    await this.#applyRules();
  }

  /**
   * After re-adoption: keeps the namespaces of `keep`, removes every other one of this plan
   * (instances that ended or vanished while the NodeEngine was away, spares, crash leftovers).
   */
  reconcile(keep: ReadonlySet<string>): Promise<string[]> {
    return this.#serial(async () => {
      const removed: string[] = [];
      let rulesChanged = false;
      for (const a of [...this.#attached.values()]) {
        if (keep.has(a.id)) continue;
        await this.#deleteNetns(a.netns);
        await rm(this.#stateFile(a.id), { force: true });
        this.#attached.delete(a.id);
        rulesChanged ||= a.ports.length > 0;
        removed.push(a.netns);
      }
      const ours = new Set([...this.#attached.values()].map((a) => a.netns));
      for (const s of this.#spares) ours.add(s.netns);
      for (const name of await readdir(NETNS_DIR).catch(() => [] as string[])) {
        if (!isPlanNetns(this.plan, name) || ours.has(name)) continue;
        await this.#deleteNetns(name);
        removed.push(name);
      }
      if (rulesChanged) await this.#applyRules();
      return removed;
    });
  }

  get(id: string): Attachment | undefined {
    return this.#attached.get(id);
  }

  /** Gives the instance a namespace (a spare when one is ready) and maps its ports. */
  attach(id: string, ports: readonly PortMapping[], meta?: AttachMeta): Promise<Attachment> {
    return this.#serial(async () => {
      const known = this.#attached.get(id);
      if (known !== undefined) return known;
      // the mappings are checked before anything is created
      const probe = portRules(id, this.#anyIp(), ports);
      const others = [...this.#attached.values()].flatMap((a) => a.ports);
      const conflict = mappingProblem([...others, ...probe], this.plan);
      if (conflict !== undefined) throw new Error(conflict);
      for (const r of probe) {
        if (!(await hostPortFree(r.hostPort, r.protocol))) throw new Error(`host port ${r.hostPort}/${r.protocol} is already in use on this node`);
      }
      let slot = this.#spares.shift();
      if (slot === undefined) slot = await this.#create();
      const a: Attachment = { id, ip: slot.ip, netns: slot.netns, path: join(NETNS_DIR, slot.netns), ports: portRules(id, slot.ip, ports), ip6: addressV6(this.plan, slot.ip) };
      if (meta !== undefined) {
        a.job_name = meta.job_name;
        a.instance_number = meta.instance_number;
        if (meta.overlay !== undefined) a.overlay = meta.overlay;
      }
      this.#attached.set(id, a);
      try {
        // synchronous: a few µs, where writeFile + rename cost two thread-pool round trips and
        // loop turns on the deploy path (ms under load)
        this.#writeStateSync(a);
        if (a.ports.length > 0) await this.#applyRules();
      } catch (err) {
        this.#attached.delete(id);
        await rm(this.#stateFile(id), { force: true });
        await this.#deleteNetns(a.netns);
        if (a.ports.length > 0) await this.#applyRules().catch(() => undefined);
        throw err;
      }
      // no refill here: the `ip` runs must not compete with this instance's start (see prepare)
      return a;
    });
  }

  /** Removes the instance's namespace (its veth goes with it) and its mappings; idempotent. */
  detach(id: string): Promise<void> {
    return this.#serial(async () => {
      const a = this.#attached.get(id);
      if (a === undefined) return;
      await this.#deleteNetns(a.netns);
      this.#attached.delete(id);
      await rm(this.#stateFile(id), { force: true });
      if (a.ports.length > 0) await this.#applyRules();
    });
  }

  /**
   * Fills the spare pool a moment from now (the next deploy then costs no `ip` run). The
   * NodeEngine calls it at start and after each instance's start, when the deploy is done.
   */
  prepare(delayMs = REFILL_DELAY_MS): void {
    if (delayMs <= 0) {
      this.#refill();
      return;
    }
    this.#refillSoon(delayMs);
  }

  /** Stops refilling and removes the spares; attached namespaces stay for the next start. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#refillTimer);
    this.#refillTimer = undefined;
    await this.#refilling;
    await this.#serial(async () => {
      for (const s of this.#spares.splice(0)) await this.#deleteNetns(s.netns);
    });
    await this.#unlock();
  }

  /** Removes everything this plan made (tests; a worker being uninstalled): namespaces, bridge, table. */
  async destroy(): Promise<void> {
    await this.close();
    await this.#serial(async () => {
      for (const a of this.#attached.values()) {
        await this.#deleteNetns(a.netns);
        await rm(this.#stateFile(a.id), { force: true });
      }
      this.#attached.clear();
      for (const name of await readdir(NETNS_DIR).catch(() => [] as string[])) if (isPlanNetns(this.plan, name)) await this.#deleteNetns(name);
      await run('nft', ['-f', '-'], nftDeleteTable(this.plan));
      await run('ip', ['link', 'del', this.plan.bridge]);
    });
  }

  // ---------------------------------------------------------------- internals

  get #lockFile(): string {
    return join(LOCK_DIR, `net-${this.plan.tag}.pid`);
  }

  /** Two NodeEngines with the same --namespace would remove each other's namespaces and rules. */
  async #lock(): Promise<void> {
    await mkdir(LOCK_DIR, { recursive: true, mode: 0o755 });
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await writeFile(this.#lockFile, String(process.pid), { flag: 'wx', mode: 0o644 });
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const owner = Number((await readFile(this.#lockFile, 'utf8').catch(() => '')).trim());
      if (owner === process.pid) return;
      if (owner > 0 && pidAlive(owner)) {
        throw new Error(`another NodeEngine (pid ${owner}) already runs with --namespace ${this.plan.namespace} on this kernel; give each NodeEngine its own --namespace`);
      }
      await rm(this.#lockFile, { force: true });
    }
    throw new Error(`cannot take ${this.#lockFile}`);
  }

  async #unlock(): Promise<void> {
    const owner = Number((await readFile(this.#lockFile, 'utf8').catch(() => '')).trim());
    if (owner === process.pid) await rm(this.#lockFile, { force: true });
  }

  #anyIp(): string {
    return this.plan.gateway.replace(/\d+$/, (d) => String(Number(d) + 1));
  }

  #refillTimer: NodeJS.Timeout | undefined;

  #refillSoon(delayMs: number): void {
    if (this.#closed || this.#refillTimer !== undefined || this.#spares.length >= this.#spareTarget) return;
    this.#refillTimer = setTimeout(() => {
      this.#refillTimer = undefined;
      this.#refill();
    }, delayMs);
    this.#refillTimer.unref();
  }

  #refill(): void {
    if (this.#closed || this.#refilling !== undefined || this.#spares.length >= this.#spareTarget) return;
    this.#refilling = (async () => {
      try {
        while (!this.#closed && this.#spares.length < this.#spareTarget) {
          const s = await this.#serial(() => this.#create());
          if (this.#closed) {
            await this.#serial(() => this.#deleteNetns(s.netns));
            break;
          }
          this.#spares.push(s);
        }
      } catch (err) {
        this.#log.warn(`could not prepare a spare network namespace: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        this.#refilling = undefined;
      }
    })();
  }

  /** A new namespace with a wired veth and the next free address (call inside #serial). */
  async #create(): Promise<Spare> {
    const used = [...this.#attached.values()].map((a) => a.ip).concat(this.#spares.map((s) => s.ip), [...this.#pending]);
    const ip = allocateAddress(this.plan, used);
    if (ip === undefined) throw new Error(`no free instance address left in ${this.plan.cidr}`);
    this.#pending.add(ip);
    const netns = netnsName(this.plan, ip);
    const veth = vethName(this.plan, ip);
    const mtu = this.plan.mtu !== undefined ? ` mtu ${this.plan.mtu}` : '';
    const host = [`netns add ${netns}`, `link add ${veth}${mtu} type veth peer name eth0${mtu} netns ${netns}`, `link set ${veth} master ${this.plan.bridge} up`,
      // hairpin: with br_netfilter loaded, a packet DNATed to an address behind the port it came in
      // on (an instance calling its own service or instance IP) must be allowed back out of it
      `link set ${veth} type bridge_slave hairpin on`].join('\n');
    const inside = ['link set lo up', `addr add ${ip}/${this.plan.subnet.prefix} dev eth0`, 'link set eth0 up', `route add default via ${this.plan.gateway}`];
    const ip6 = addressV6(this.plan, ip);
    if (ip6 !== undefined && this.plan.subnet6 !== undefined && this.plan.gateway6 !== undefined) {
      inside.push(`addr add ${ip6}/${this.plan.subnet6.prefix} dev eth0 nodad`, `route add default via ${this.plan.gateway6} dev eth0`);
    }
    try {
      for (let attempt = 0; ; attempt++) {
        const r = await run('ip', ['-batch', '-'], `${host}\n`);
        if (r.code === 0) break;
        // leftovers of a crash with the same name: remove and try once more
        await this.#deleteNetns(netns);
        await run('ip', ['link', 'del', veth]);
        if (attempt > 0) throw new Error(`cannot create network namespace ${netns}: ${r.stderr.trim()}`);
      }
      const r = await run('ip', ['-n', netns, '-batch', '-'], `${inside.join('\n')}\n`);
      if (r.code !== 0) {
        await this.#deleteNetns(netns);
        throw new Error(`cannot configure network namespace ${netns}: ${r.stderr.trim()}`);
      }
      return { ip, netns };
    } finally {
      this.#pending.delete(ip);
    }
  }

  async #deleteNetns(name: string): Promise<void> {
    try {
      await access(join(NETNS_DIR, name));
    } catch {
      return;
    }
    const r = await run('ip', ['netns', 'del', name]);
    if (r.code !== 0) this.#log.warn(`could not remove network namespace ${name}: ${r.stderr.trim()}`);
  }

  async #applyRules(): Promise<void> {
    const mappings = [...this.#attached.values()].flatMap((a) => a.ports);
    await must('nft', ['-f', '-'], nftRuleset({ plan: this.plan, mappings, overlay: this.#overlay }));
  }

  #stateFile(id: string): string {
    return join(this.#dir, `${id}.json`);
  }

  #writeStateSync(a: Attachment): void {
    const tmp = `${this.#stateFile(a.id)}.tmp`;
    writeFileSync(tmp, JSON.stringify(a), { mode: 0o600 });
    renameSync(tmp, this.#stateFile(a.id));
  }
}

/** The namespace addresses of the instances a previous run left (their state files), whatever the plan. */
export async function persistedAttachmentIps(dataDir: string): Promise<string[]> {
  const dir = join(dataDir, 'net');
  const out: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.endsWith('.json')) continue;
    try {
      const a = JSON.parse(await readFile(join(dir, name), 'utf8')) as Partial<Attachment>;
      if (typeof a.id === 'string' && typeof a.ip === 'string') out.push(a.ip);
    } catch {
      /* unreadable: removed as stale at start */
    }
  }
  return out;
}

/** What instances see as /etc/resolv.conf with the worker's resolver. */
export function resolvConfText(dns: string): string {
  return `# the oak NodeEngine: the worker's resolver (NetManager) on the bridge gateway\nnameserver ${dns}\noptions ndots:1\n`;
}

/** A host route (not on the plan's own bridge) that overlaps the plan's subnet: the reason, else undefined. */
export async function routeConflict(plan: BridgePlan): Promise<string | undefined> {
  // a subnet already routed elsewhere would make instances unreachable, or hijack a network
  const routes = JSON.parse((await must('ip', ['-j', '-4', 'route', 'show'])) || '[]') as { dst?: string; dev?: string; type?: string }[];
  for (const r of routes) {
    if (r.dev === plan.bridge || r.dst === undefined || r.dst === 'default') continue;
    if (r.type !== undefined && r.type !== 'unicast') continue;
    let dst;
    try {
      dst = parseSubnet(r.dst.includes('/') ? r.dst : `${r.dst}/32`);
    } catch {
      continue;
    }
    if (overlaps(dst, plan.subnet)) return `the instance bridge subnet ${plan.cidr} overlaps the route ${r.dst} on ${r.dev ?? '?'}`;
  }
  return undefined;
}

async function bridgeAddresses(dev: string): Promise<string[]> {
  const r = await run('ip', ['-j', 'addr', 'show', 'dev', dev]);
  if (r.code !== 0) return [];
  const j = JSON.parse(r.stdout || '[]') as { addr_info?: { local?: string; prefixlen?: number; scope?: string }[] }[];
  return (j[0]?.addr_info ?? []).filter((a) => a.scope !== 'link' && a.local !== undefined).map((a) => `${a.local as string}/${a.prefixlen ?? 32}`);
}

/** Removes every namespace, the rule table and the bridge of a namespace's plan (tests, uninstall). */
export async function removeInstanceNetwork(opts: { namespace: string; dataDir: string; subnet?: string | undefined }): Promise<void> {
  await new InstanceNetworks({ ...opts, log: { info: () => {}, warn: () => {}, error: () => {} } }).destroy();
}
