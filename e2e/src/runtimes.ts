/**
 * Workloads of every virtualization for the runtime matrix (issue 10): for each one, a service that
 * prints a marker line and keeps running, a one-shot that prints and exits with a code, and a hog
 * that goes over its memory limit. The census finds an instance's copies on this machine by the
 * marker in their command lines (every namespace shares the pid namespace), whatever runs them: a
 * supervisor's wrapper (process, qemu, wasm) or a containerd shim; a microvm's command is inside
 * its initramfs, so its qemu is found by the marker on its console.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { InstanceDoc, ServiceDoc, Virtualization } from '@oak/contracts';
import { buildWasiModule, waitFor } from '@oak/testkit';
import type { Api } from './api.ts';
import type { Procs } from './procs.ts';
import { sla } from './sla.ts';

export interface Workload {
  virtualization: Virtualization;
  code: string;
  cmd?: string[];
  memory: number;
  vcpus?: number;
  one_shot?: boolean;
  extra?: Record<string, unknown>;
}

/** How to make each kind of workload for one virtualization. */
export interface RuntimeFixture {
  virtualization: Virtualization;
  /** prints `<marker> up` and keeps running */
  service(marker: string): Workload;
  /** prints `<marker> done` and exits with `code` */
  oneShot(marker: string, code: number): Workload;
  /**
   * grows past its memory limit (FAILED, out of memory); absent for a VM, whose memory limit is
   * its guest RAM (qemu -m): a guest over it is the guest kernel's business, not a cgroup OOM
   */
  hog?(marker: string): Workload;
  /** how long a start may take here (a VM boots in seconds under software emulation) */
  startMs: number;
}

/** the fixtures of the shell-based virtualizations: a busybox image (container) and /bin/sh (process) */
export function shellFixtures(image: string): RuntimeFixture[] {
  const sh = (v: 'container' | 'process', script: string, marker: string): { code: string; cmd: string[] } =>
    v === 'container' ? { code: image, cmd: ['sh', '-c', script, marker] } : { code: '/bin/sh', cmd: ['-c', script, marker] };
  return (['container', 'process'] as const).map((v) => ({
    virtualization: v,
    startMs: 30_000,
    // ends on SIGTERM (a container's sh is its pid 1, which ignores it): a delete does not wait out
    // the stop's grace period for the SIGKILL (that escalation is the runtime tests' business)
    service: (m) => ({ virtualization: v, memory: 32, ...sh(v, 'trap "exit 0" TERM; echo "$0 up"; while :; do sleep 1; done', m) }),
    oneShot: (m, code) => ({ virtualization: v, memory: 32, one_shot: true, ...sh(v, `echo "$0 done"; exit ${code}`, m) }),
    // doubling a shell variable: 32 MB are reached in about 25 rounds
    hog: (m) => ({ virtualization: v, memory: 32, ...sh(v, 'echo "$0 hog"; x=aaaaaaaa; while :; do x=$x$x; done', m) }),
  }));
}

/** the exit codes a wasm one-shot of the matrix can have (one module each: WAT has no atoi) */
const WASM_EXIT_CODES = [0, 1, 3];

/**
 * The wasm fixture: WASI modules built from WAT into `dir` (an absolute path the worker reads; the
 * 1-DOC and M-DOC workers share this machine's file system). The marker is the module's argument.
 */
export async function wasmFixture(dir: string): Promise<RuntimeFixture> {
  const file = async (name: string, o: Parameters<typeof buildWasiModule>[0]): Promise<string> => {
    const p = join(dir, `${name}.wasm`);
    await writeFile(p, await buildWasiModule(o), { mode: 0o644 });
    return p;
  };
  const service = await file('service', { argsLine: ' up', then: 'sleep' });
  const hog = await file('hog', { argsLine: ' hog', then: 'hog' });
  const oneShots = new Map<number, string>();
  for (const c of WASM_EXIT_CODES) oneShots.set(c, await file(`exit${c}`, { argsLine: ' done', then: { exit: c } }));
  return {
    virtualization: 'wasm',
    startMs: 30_000,
    service: (m) => ({ virtualization: 'wasm', memory: 32, code: service, cmd: [m] }),
    oneShot: (m, code) => {
      const p = oneShots.get(code);
      if (p === undefined) throw new Error(`the wasm fixture has one-shots exiting ${WASM_EXIT_CODES.join(', ')}, not ${code}`);
      return { virtualization: 'wasm', memory: 32, one_shot: true, code: p, cmd: [m] };
    },
    hog: (m) => ({ virtualization: 'wasm', memory: 32, code: hog, cmd: [m] }),
  };
}

/**
 * The unikernel fixture: the testkit's multiboot kernel (`archiveUrl`: its .tar.gz served over
 * HTTP) prints its command line (so `<marker> up` / `<marker> done`) and idles (its vCPU halted) or
 * exits with `exit=N`.
 */
export function unikernelFixture(archiveUrl: string): RuntimeFixture {
  return {
    virtualization: 'unikernel',
    startMs: 60_000,
    // idle, not loop: a guest spinning in a loop keeps a host CPU busy for the whole test
    service: (m) => ({ virtualization: 'unikernel', memory: 32, code: archiveUrl, cmd: [m, 'up', 'idle'] }),
    oneShot: (m, code) => ({ virtualization: 'unikernel', memory: 32, one_shot: true, code: archiveUrl, cmd: [m, 'done', `exit=${code}`] }),
  };
}

/**
 * The microvm fixture: the busybox image booted as a VM (its console is the log). Guest RAM is
 * the limit; the hog doubles a shell variable until the guest kernel's OOM killer ends it.
 */
export function microvmFixture(image: string): RuntimeFixture {
  const w = (script: string, m: string, more: Partial<Workload> = {}): Workload => ({ virtualization: 'microvm', memory: 128, code: image, cmd: ['sh', '-c', script, m], ...more });
  return {
    virtualization: 'microvm',
    // a boot under software emulation on a loaded machine: seconds to tens of seconds
    startMs: 180_000,
    service: (m) => w('echo "$0 up"; while :; do sleep 1; done', m),
    oneShot: (m, code) => w(`echo "$0 done"; exit ${code}`, m, { one_shot: true }),
    hog: (m) => w('echo "$0 hog"; x=aaaaaaaa; while :; do x=$x$x; done', m),
  };
}

/** a TCP relay (node, no dependency): `node -e FORWARD <listen host> <port> <to host> <port>` prints `ready` once it listens */
const FORWARD = "const net=require('node:net');const [lh,lp,th,tp]=process.argv.slice(1);"
  + "net.createServer((c)=>{const u=net.connect(Number(tp),th);c.pipe(u).pipe(c);u.on('error',()=>c.destroy());c.on('error',()=>u.destroy());})"
  + ".listen(Number(lp),lh,()=>console.log('ready'));";

/**
 * The topology's registry (on the machine's loopback, which a host namespace cannot reach) at the
 * same `127.0.0.1:<port>` inside each of `hosts`: a relay on the network's gateway address and one
 * on each host's loopback to it. A microvm pulls its image itself (skopeo in the NodeEngine), so
 * the image the containers get ahead of time must be pullable from the workers.
 */
export async function registryIntoHosts(procs: Procs, dir: string, image: string, gatewayIp: string, hosts: { name: string; ns: string }[]): Promise<void> {
  const port = /^127\.0\.0\.1:(\d+)\//.exec(image)?.[1];
  if (port === undefined) throw new Error(`${image} is not on the loopback registry`);
  const started = [procs.spawn('registry-gw', '-e', [FORWARD, gatewayIp, port, '127.0.0.1', port], { dir })];
  for (const h of hosts) started.push(procs.spawn(`registry-${h.name}`, '-e', [FORWARD, '127.0.0.1', port, gatewayIp, port], { dir, netns: h.ns }));
  for (const p of started) await waitFor(() => (p.log().includes('ready') ? true : undefined), { timeoutMs: 10_000, message: `${p.name} listens` });
}

/** a qemu whose `-initrd` is a microvm instance's: its console (the log beside it) names the workload */
function microvmConsoleHas(argv: string[], marker: string): boolean {
  if (!(argv[0] ?? '').endsWith('qemu-system-x86_64')) return false;
  const i = argv.indexOf('-initrd');
  const initrd = i < 0 ? undefined : argv[i + 1];
  if (initrd === undefined || !initrd.endsWith('/initrd')) return false;
  try {
    return readFileSync(`${initrd.slice(0, -'/initrd'.length)}/log`, 'utf8').includes(marker);
  } catch {
    return false;
  }
}

function cmdline(pid: string): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw === '' ? undefined : raw.split('\0').filter((a) => a !== '');
  } catch {
    return undefined;
  }
}

function ppid(pid: string): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
  } catch {
    return undefined;
  }
}

/**
 * The copies of a workload on this machine: processes whose command line carries `marker` and
 * whose parent's does not (the wrapper or the container's first process; their children and the
 * wrapper's subshell share the marker and are not counted).
 */
export function copies(marker: string): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const argv = cmdline(pid);
    if (argv === undefined || !(argv.some((a) => a.includes(marker)) || microvmConsoleHas(argv, marker))) continue;
    const parent = ppid(pid);
    if (parent !== undefined && cmdline(parent)?.some((a) => a.includes(marker)) === true) continue;
    out.push(Number(pid));
  }
  return out;
}

/**
 * Waits for all of `ps` (the matrix's steps run side by side) and then throws what failed, every
 * failure named: one that fails does not leave the others running into the test's clean-up.
 */
export async function settleAll(ps: Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(ps)).flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
  if (failed.length === 1) throw failed[0];
  if (failed.length > 1) throw new Error(failed.map((e) => (e instanceof Error ? e.message : String(e))).join('\n'), { cause: failed[0] });
}

/** One service of the matrix: its fixture, kind (svc, ok, bad, hog...), marker, application and service. */
export interface Deployed {
  fixture: RuntimeFixture;
  kind: string;
  marker: string;
  appId: string;
  svc: ServiceDoc;
}

/** The matrix's API calls: deploy a workload as its own application, wait for its one instance, read its logs. */
export class Matrix {
  readonly deployed: Deployed[] = [];
  constructor(
    readonly api: Api,
    readonly run: string,
  ) {}

  marker(f: RuntimeFixture, kind: string): string {
    return `${this.run}-${f.virtualization}-${kind}`;
  }

  async deploy(fixture: RuntimeFixture, kind: string, w: Workload): Promise<Deployed> {
    const marker = this.marker(fixture, kind);
    const app = `${fixture.virtualization.replace(/[^a-z]/g, '').slice(0, 8)}${kind.replace(/[^A-Za-z0-9]/g, '')}`.slice(0, 30);
    const [a] = await this.api.createApps(sla({ app, ...w, extra: w.extra }), true);
    if (a === undefined) throw new Error(`${marker}: no application created`);
    const [svc] = await this.api.services(a.applicationID);
    if (svc === undefined) throw new Error(`${marker}: no service created`);
    const d = { fixture, kind, marker, appId: a.applicationID, svc };
    this.deployed.push(d);
    return d;
  }

  async one(d: Deployed, pred: (i: InstanceDoc) => boolean, what: string, ms: number): Promise<InstanceDoc> {
    const s = await this.api.waitInstances(d.svc.microserviceID, (l) => l.length === 1 && pred(l[0]!), ms, `${d.marker}: ${what}`);
    return s.instance_list[0]!;
  }

  /** `<status> <body>` of the instance's logs */
  async logs(d: Deployed, n = 0): Promise<string> {
    const r = await fetch(`${this.api.base}/api/service/${d.svc.microserviceID}/instance/${n}/logs`, { headers: { authorization: `Bearer ${this.api.token}` } });
    return `${r.status} ${await r.text()}`;
  }

  async waitLogs(d: Deployed, line: string, ms = 30_000): Promise<void> {
    let last = '';
    await waitFor(async () => {
      last = await this.logs(d);
      return last.includes(line) ? true : undefined;
    }, { timeoutMs: ms, message: `${d.marker}: "${line}" in its logs` }).catch((err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}; last answer: ${last.slice(0, 500)}`);
    });
  }

  /** deletes every application deployed and waits until no copy of any is left */
  async deleteAll(ms = 30_000): Promise<void> {
    await settleAll(this.deployed.map((d) => this.api.call('DELETE', `/api/application/${d.appId}`)));
    await settleAll(this.deployed.map((d) => waitFor(() => (copies(d.marker).length === 0 ? true : undefined), { timeoutMs: ms, message: `${d.marker}: no copy left after the delete` })));
  }
}
