/**
 * `microvm` virtualization: an OCI image booted as a Linux VM. The image's root filesystem (see
 * image.ts) plus a base archive (the host's static busybox and the virtio-net modules of the
 * kernel) plus a per-instance archive (a generated /init) make the initramfs; the kernel is
 * Debian's `linux-image-*-cloud-amd64` unpacked with `dpkg-deb -x` into the kernel directory
 * (default /var/cache/oak/microvm-kernel, scripts/microvm-kernel.sh). qemu (`-M microvm`, ../qemu)
 * runs under the shared supervisor: guest RAM and vcpus from the SLA, the serial console is the
 * log, networking as for unikernels (a tap bridged in the instance's namespace, the address set
 * by /init). The init runs the image's entrypoint + cmd (the SLA's cmd replaces both, args are
 * appended, as for containers) with the image's env and the SLA's, then prints
 * `oak-microvm: exit=<code> oom=<guest OOM kills>` and resets the VM (qemu -no-reboot exits):
 * that line is the exit status (the cloud kernel has no /dev/port for isa-debug-exit).
 *
 * As a container's: the image's `User` (uid[:gid] or names, resolved against the image's
 * /etc/passwd and /etc/group on the host before anything boots) runs the workload, in the image's
 * WorkingDir (made when missing), HOME from its passwd entry unless the env has one; a private
 * registry's login (the organisation's, for the image's host) serves the pull (image.ts). The SLA's
 * added files travel in the per-instance archive and /init moves them to their paths; volumes
 * (host paths and named volumes, already checked by the NodeEngine) are directories shared with
 * virtiofs: one virtiofsd per volume (read-only ones see a read-only bind mount of their own),
 * started by the instance's start.sh before it execs qemu, so they live and die with the VM.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync, fstatSync } from 'node:fs';
import { copyFile, chmod, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RuntimeError } from '../types.ts';
import type { InstanceSpec, ProbeResult } from '../types.ts';
import type { Launch, LaunchContext, Launcher } from '../supervisor/launcher.ts';
import { SupervisedRuntime } from '../supervisor/supervisor.ts';
import type { SupervisorOptions } from '../supervisor/supervisor.ts';
import { interpretExit } from '../supervisor/verdict.ts';
import type { ExitVerdict, RawExit } from '../supervisor/verdict.ts';
import { resolveCode } from '../process/code.ts';
import { probeQemu, qemuArgv, qemuVerdict, spawnProbeVm } from '../qemu/index.ts';
import type { QemuHost } from '../qemu/index.ts';
import { guestMac, releaseInstanceNet, setupInstanceNet } from '../qemu/tap.ts';
import type { GuestNet } from '../qemu/tap.ts';
import { qemuOverheadMb } from '../unikernel/index.ts';
import { RootfsCache, packCpio } from './image.ts';
import { normalizeRef, registryHost } from '../containerd/image.ts';
import type { ImageRun, PullLogin } from './image.ts';

const pexec = promisify(execFile);
export const DEFAULT_MICROVM_KERNEL_DIR = '/var/cache/oak/microvm-kernel';
export const DEFAULT_MICROVM_MB = 128;
/** below this the cloud kernel does not get to its init (64 MB panics here, 96 MB boots) */
export const MIN_MICROVM_MB = 96;
const BUSYBOX = '/bin/busybox';
/** what virtio-net over virtio-mmio needs (the guest loads them in two rounds, so the order does not matter) */
const NET_MODULES = ['virtio_ring', 'virtio', 'virtio_mmio', 'failover', 'net_failover', 'virtio_net'];
/** what volumes (virtiofs over virtio-mmio) need besides the virtio core; optional in a kernel */
const FS_MODULES = ['fuse', 'virtiofs'];
const VIRTIO_CORE = ['virtio_ring', 'virtio', 'virtio_mmio'];
/** where virtiofsd may be installed (qemu's C one in Debian 12, the Rust one in its own package) */
const VIRTIOFSD = ['/usr/libexec/virtiofsd', '/usr/lib/qemu/virtiofsd', '/usr/bin/virtiofsd'];
const APPEND = 'console=ttyS0 quiet panic=-1 reboot=t';
/**
 * Under software emulation the guest's TSC is the host's: its frequency on the command line spares
 * the guest the calibration against the PIT, which fails on a loaded host ("Unable to calibrate
 * against PIT ... Marking TSC unstable") and then hangs the boot (measured: no boot in 60 s at a
 * load of 12, 5 s with it); `tsc=reliable` keeps the clocksource watchdog from dropping it later.
 */
export function tscArgs(cpuinfo: string): string {
  const m = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(cpuinfo);
  const khz = m === null ? 0 : Math.round(Number(m[1]) * 1000);
  return khz > 0 ? ` tsc_early_khz=${khz} tsc=reliable` : '';
}

const EXIT_RE = /^oak-microvm: exit=(\d{1,3}) oom=(\d{1,9})\s*$/;
const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** KVM test boots under way in this process, by kernel and host boot */
const kvmTests = new Map<string, Promise<string | undefined>>();

export interface MicrovmOptions {
  /** where `dpkg-deb -x linux-image-…-amd64.deb` was unpacked (default /var/cache/oak/microvm-kernel) */
  kernelDir?: string | undefined;
  /** registries besides loopback reached over plain HTTP (as the container driver's) */
  plainHttpRegistries?: string[] | undefined;
  pullTimeoutMs?: number | undefined;
  /** test seam: decide KVM instead of the test boot */
  kvm?: boolean | undefined;
}

export type MicrovmRuntimeOptions = SupervisorOptions & MicrovmOptions;

export interface MicrovmKernel {
  vmlinuz: string;
  version: string;
  /** module name -> .ko path */
  modules: Map<string, string>;
}

/** The kernel of a `dpkg-deb -x` tree: boot/vmlinuz-<v> and lib/modules/<v>/…; a string says what is missing. */
export async function findKernel(dir: string): Promise<MicrovmKernel | string> {
  let boot: string[];
  try {
    boot = (await readdir(join(dir, 'boot'))).filter((f) => f.startsWith('vmlinuz-')).sort();
  } catch {
    return `no kernel in ${dir} (run scripts/microvm-kernel.sh, or pass --microvm-kernel <dir> with a dpkg-deb -x of linux-image-cloud-amd64)`;
  }
  const v = boot.pop();
  if (v === undefined) return `no boot/vmlinuz-* in ${dir} (run scripts/microvm-kernel.sh)`;
  const version = v.slice('vmlinuz-'.length);
  const modules = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else if (e.name.endsWith('.ko') && [...NET_MODULES, ...FS_MODULES].includes(e.name.slice(0, -3))) modules.set(e.name.slice(0, -3), join(d, e.name));
    }
  };
  await walk(join(dir, 'lib', 'modules', version, 'kernel'));
  const missing = NET_MODULES.filter((m) => !modules.has(m));
  if (missing.length > 0) return `the kernel ${version} in ${dir} lacks the modules ${missing.join(', ')} (uncompressed .ko) for virtio-net`;
  return { vmlinuz: join(dir, 'boot', v), version, modules };
}

/** a word for a POSIX shell, single-quoted */
export function shq(s: string): string {
  if (s.includes('\0')) throw new RuntimeError('invalid_spec', 'an argument or environment entry contains a NUL character');
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface InitPlan {
  argv: string[];
  env: string[];
  workdir: string;
  net?: GuestNet | undefined;
  hostname: string;
  /** who runs the workload (undefined: root) */
  user?: { uid: number; gid: number } | undefined;
  /** added files: /.oak/files/<i> moved to `target` (absolute) with `mode` */
  files?: { target: string; mode: number }[] | undefined;
  /** virtiofs shares: tag `vol<i>` mounted at `target` */
  volumes?: { target: string; readonly: boolean }[] | undefined;
}

/** The account of an image's `User` (Docker's rules): uid and gid, and HOME. */
export interface ImageUser {
  uid: number;
  gid: number;
  home: string;
}

const ID_RE = /^\d{1,10}$/;

function accounts(text: string | undefined): string[][] {
  return (text ?? '').split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => l.split(':'));
}

/**
 * The image's `User` ("", "name", "uid", "name:group", "uid:gid"...) against its /etc/passwd and
 * /etc/group: a name that is not there is an error (as for containers); a numeric uid that is not
 * there runs with gid 0 (or the one given) and HOME /.
 */
export function resolveUser(user: string, passwd: string | undefined, group: string | undefined): ImageUser | string {
  const [u = '', g, ...rest] = user.trim().split(':');
  if (rest.length > 0 || user.length > 256) return `the image's User ${JSON.stringify(user.slice(0, 100))} is not user[:group]`;
  const pw = accounts(passwd);
  let entry: string[] | undefined;
  let uid: number;
  if (u === '') {
    uid = 0;
    entry = pw.find((e) => e[2] === '0');
  } else if (ID_RE.test(u)) {
    uid = Number(u);
    entry = pw.find((e) => e[2] === u);
  } else {
    entry = pw.find((e) => e[0] === u);
    if (entry === undefined) return `the image's User ${JSON.stringify(u.slice(0, 100))} is not in its /etc/passwd`;
    uid = Number(entry[2]);
  }
  if (!(Number.isInteger(uid) && uid >= 0 && uid < 2 ** 32)) return `the image's /etc/passwd gives ${JSON.stringify(u.slice(0, 100))} no valid uid`;
  let gid = entry !== undefined && ID_RE.test(entry[3] ?? '') ? Number(entry[3]) : 0;
  if (g !== undefined && g !== '') {
    if (ID_RE.test(g)) gid = Number(g);
    else {
      const ge = accounts(group).find((e) => e[0] === g);
      if (ge === undefined || !ID_RE.test(ge[2] ?? '')) return `the image's User group ${JSON.stringify(g.slice(0, 100))} is not in its /etc/group`;
      gid = Number(ge[2]);
    }
  }
  if (!(gid < 2 ** 32)) return `gid ${gid} is out of range`;
  const home = entry?.[5] !== undefined && entry[5].startsWith('/') ? entry[5] : uid === 0 && u === '' ? '/root' : '/';
  return { uid, gid, home };
}

/** the modules the guest loads, in two rounds (a module whose dependency comes later loads in the second) */
function insmods(mods: string[]): string {
  const list = mods.join(' ');
  return `for m in ${list} ${list}; do $B grep -q "^$m " /proc/modules 2>/dev/null || $B insmod /.oak/modules/$m.ko 2>/dev/null; done; `
    + `for m in ${list}; do $B grep -q "^$m " /proc/modules || echo "oak-microvm: cannot load $m"; done`;
}

/** The command and environment of the guest, as a container's (SLA cmd replaces, args appended, SLA env wins). */
export function planRun(run: ImageRun, spec: Pick<InstanceSpec, 'cmd' | 'args' | 'env'>): { argv: string[]; env: string[] } {
  const argv = [...(spec.cmd !== undefined && spec.cmd.length > 0 ? spec.cmd : [...run.entrypoint, ...run.cmd]), ...(spec.args ?? [])];
  if (argv.length === 0) throw new RuntimeError('invalid_spec', 'the image has no entrypoint or cmd and the SLA gives no cmd');
  const env = new Map<string, string>();
  for (const kv of [...run.env, ...spec.env]) {
    const i = kv.indexOf('=');
    if (i > 0) env.set(kv.slice(0, i), kv);
  }
  if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
  return { argv, env: [...env.values()] };
}

/** The guest's /init: mounts, network, the workload, its exit line, reset. */
export function initScript(p: InitPlan): string {
  const l = ['#!/.oak/busybox sh', 'B=/.oak/busybox', '$B mkdir -p /proc /sys /dev /tmp /run', '$B mount -t proc proc /proc', '$B mount -t sysfs sysfs /sys',
    '$B mount -t devtmpfs devtmpfs /dev', '$B mkdir -p /dev/pts /dev/shm', '$B mount -t devpts devpts /dev/pts', '$B mount -t tmpfs tmpfs /dev/shm', '$B mount -t tmpfs tmpfs /run',
    `$B hostname ${shq(p.hostname)}`, '$B ip link set lo up',
    // a step of the set-up that fails ends the VM with this status and the reason on the console
    'fail() { echo "oak-microvm: $1"; echo "oak-microvm: exit=125 oom=0"; $B sync; $B reboot -f; exit 125; }'];
  const vols = p.volumes ?? [];
  const mods = [...(p.net !== undefined ? NET_MODULES : []), ...(vols.length > 0 ? [...VIRTIO_CORE, ...FS_MODULES] : [])];
  if (mods.length > 0) l.push(insmods([...new Set(mods)]));
  if (p.net !== undefined) {
    l.push(`$B ip addr add ${shq(`${p.net.ip}/${p.net.prefix}`)} dev eth0`, '$B ip link set eth0 up');
    if (p.net.gateway !== undefined) l.push(`$B ip route add default via ${shq(p.net.gateway)}`);
  }
  vols.forEach((v, i) => {
    const t = shq(v.target);
    l.push(`$B mkdir -p ${t} && $B mount -t virtiofs -o ${v.readonly ? 'ro,' : ''}nosuid,nodev vol${i} ${t} || fail ${shq(`cannot mount volume ${i} at ${v.target}`)}`);
  });
  (p.files ?? []).forEach((f, i) => {
    const t = shq(f.target);
    l.push(`$B mkdir -p "$($B dirname ${t})" && $B mv -f /.oak/files/${i} ${t} && $B chmod ${(f.mode & 0o777).toString(8)} ${t} || fail ${shq(`cannot place added file ${f.target}`)}`);
  });
  // Docker makes a missing WorkingDir
  l.push(`$B mkdir -p ${shq(p.workdir)} 2>/dev/null; cd ${shq(p.workdir)} 2>/dev/null || cd /`);
  const drop = p.user !== undefined && (p.user.uid !== 0 || p.user.gid !== 0) ? `/.oak/busybox nsenter -F -G ${p.user.gid} -S ${p.user.uid} -- ` : '';
  l.push(`$B env -i ${p.env.map(shq).join(' ')} ${drop}${p.argv.map(shq).join(' ')}`);
  l.push('rc=$?', "oom=$($B awk '$1 == \"oom_kill\" { print $2 }' /proc/vmstat)", 'echo "oak-microvm: exit=$rc oom=${oom:-0}"', '$B sync', '$B reboot -f', 'exit $rc', '');
  return l.join('\n');
}

/** the last `oak-microvm: exit=` line among the log's last 8 KiB */
export function readExitLine(logPath: string): { code: number; oom: number } | undefined {
  let fd: number;
  try {
    fd = openSync(logPath, 'r');
  } catch {
    return undefined;
  }
  try {
    const size = fstatSync(fd).size;
    const n = Math.min(size, 8192);
    const b = Buffer.alloc(n);
    readSync(fd, b, 0, n, size - n);
    const lines = b.toString('utf8').split(/\r?\n/).reverse();
    for (const line of lines) {
      const m = EXIT_RE.exec(line.replace(/\r/g, ''));
      if (m !== null) return { code: Number(m[1]), oom: Number(m[2]) };
    }
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** qemu's exit plus the guest's exit line to one verdict (the guest's OOM kills read as the cgroup's) */
export function microvmVerdict(raw: RawExit, line: { code: number; oom: number } | undefined, guestMb: number): ExitVerdict {
  if (raw.code !== 0 || line === undefined) {
    const v = qemuVerdict(raw);
    return raw.code === 0 ? { ...v, state: 'FAILED', detail: 'the guest stopped without an exit status (kernel panic, or its init failed: see the logs)' } : v;
  }
  return interpretExit({ ...raw, code: line.code, oomKills: line.oom, memoryLimitMb: guestMb });
}

/** what one virtiofsd is given in the VM's cgroup (MB, measured about 3 MB resident idle) */
const VIRTIOFSD_MB = 16;
/** volumes of one microvm at most (one virtiofsd each) */
const MAX_VOLUMES = 16;

async function findVirtiofsd(): Promise<string | undefined> {
  for (const p of VIRTIOFSD) {
    try {
      await access(p, fsConstants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/**
 * The instance's start.sh: one virtiofsd per volume (a read-only one inside its own mount
 * namespace where the directory is bind-mounted read-only, so the guest cannot write whatever it
 * does), the wait for their sockets (5 s), then `exec` qemu: the virtiofsds are the VM's children,
 * in its process group and cgroup, stopped with it; each exits when qemu closes its socket.
 */
export function startScript(vols: { source: string; readonly: boolean; socket: string }[], qemu: string[], tools: { virtiofsd: string; unshare: string; mount: string }): string {
  const l = ['set -e'];
  for (const v of vols) {
    const d = `${shq(tools.virtiofsd)} --socket-path=${shq(v.socket)} -o ${shq(`source=${v.source}`)} -o sandbox=namespace -o log_level=err`;
    if (v.readonly) {
      const inner = `${tools.mount} --bind "$1" "$1" && ${tools.mount} -o remount,bind,ro "$1" && shift && exec "$@"`;
      l.push(`${shq(tools.unshare)} --mount --propagation private -- /bin/sh -c ${shq(inner)} sh ${shq(v.source)} ${d} &`);
    } else l.push(`${d} &`);
  }
  const socks = vols.map((v) => `[ -S ${shq(v.socket)} ]`).join(' && ');
  l.push('n=0', `until ${socks}; do n=$((n+1)); if [ $n -gt 100 ]; then echo "oak-microvm: virtiofsd did not start" >&2; exit 125; fi; sleep 0.05; done`);
  l.push(`exec ${qemu.map(shq).join(' ')}`, '');
  return l.join('\n');
}

export class MicrovmLauncher implements Launcher {
  readonly virtualization = 'microvm' as const;
  readonly #dataDir: string;
  readonly #netDir: string;
  readonly #opts: MicrovmOptions;
  readonly #kernelDir: string;
  #images: RootfsCache | undefined;
  #ready: Promise<{ host: QemuHost; kernel: MicrovmKernel; detail: string } | string> | undefined;
  #base: Promise<string> | undefined;
  #append = APPEND;

  constructor(dataDir: string, opts: MicrovmOptions = {}) {
    this.#dataDir = dataDir;
    this.#netDir = join(dataDir, 'net');
    this.#opts = opts;
    this.#kernelDir = opts.kernelDir ?? DEFAULT_MICROVM_KERNEL_DIR;
  }

  async probe(_host: { cgroups: boolean; detail: string }): Promise<ProbeResult> {
    const r = await this.#prepare();
    return typeof r === 'string' ? { available: false, detail: r } : { available: true, detail: r.detail };
  }

  /** qemu, the kernel, the tools; KVM decided by booting the kernel once (cached per boot) */
  #prepare(): Promise<{ host: QemuHost; kernel: MicrovmKernel; detail: string } | string> {
    this.#ready ??= (async () => {
      const host = await probeQemu();
      if (typeof host === 'string') return host;
      const kernel = await findKernel(this.#kernelDir);
      if (typeof kernel === 'string') return kernel;
      for (const t of ['skopeo', 'umoci', 'cpio', 'find']) {
        try {
          await resolveCode(t, '/nonexistent');
        } catch {
          return `${t} is not installed (scripts/install-deps.sh runtime installs skopeo, umoci, cpio)`;
        }
      }
      if (!existsSync(BUSYBOX)) return `${BUSYBOX} (a static busybox, package busybox-static) is needed for the guest's init`;
      let kvm = false;
      let why = host.kvmProblem ?? 'no KVM';
      if (this.#opts.kvm !== undefined) {
        kvm = this.#opts.kvm && host.kvm;
        why = this.#opts.kvm ? why : 'KVM turned off';
      } else if (host.kvm) {
        const r = await this.#kvmBoots(host, kernel);
        kvm = r === undefined;
        if (r !== undefined) why = r;
      }
      const h: QemuHost = { ...host, kvm };
      this.#append = kvm ? APPEND : APPEND + tscArgs(await readFile('/proc/cpuinfo', 'utf8').catch(() => ''));
      return { host: h, kernel, detail: `Linux ${kernel.version} in ${host.binary} -M microvm, ${kvm ? 'KVM' : `software emulation (TCG; ${why})`}` };
    })();
    return this.#ready;
  }

  /**
   * Does this kernel boot under KVM here? A paused VM showing its monitor (the shared probe) is not
   * enough: on a nested VM Linux hangs early under KVM while the multiboot test kernel runs. Boots
   * the kernel with a one-line init (deadline 8 s); the answer is kept per host boot in the cache.
   */
  async #kvmBoots(host: QemuHost, kernel: MicrovmKernel): Promise<string | undefined> {
    const boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => 'none')).trim();
    const ks = await stat(kernel.vmlinuz);
    const key = createHash('sha256').update(JSON.stringify([boot, host.binary, kernel.vmlinuz, ks.size, ks.mtimeMs])).digest('hex').slice(0, 24);
    // kept beside the kernel (root's, like the kernel): every NodeEngine of this machine asks once per boot
    const memos = [join(this.#kernelDir, `.oak-kvm-${key}.json`), join(this.#dataDir, 'cache', 'microvm', `kvm-${key}.json`)];
    for (const memo of memos) {
      try {
        return (JSON.parse(await readFile(memo, 'utf8')) as { problem: string | null }).problem ?? undefined;
      } catch {
        /* not tried yet on this boot */
      }
    }
    let p = kvmTests.get(key);
    if (p === undefined) {
      p = this.#kvmTest(host, kernel, memos);
      kvmTests.set(key, p);
    }
    return p;
  }

  async #kvmTest(host: QemuHost, kernel: MicrovmKernel, memos: string[]): Promise<string | undefined> {
    const dir = join(this.#dataDir, 'cache', 'microvm');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = join(dir, `kvmtest-${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(join(tmp, 'fs', '.oak'), { recursive: true });
      await copyFile(BUSYBOX, join(tmp, 'fs', '.oak', 'busybox'));
      await writeFile(join(tmp, 'fs', 'init'), '#!/.oak/busybox sh\necho oak-kvm-ok\n/.oak/busybox reboot -f\n', { mode: 0o755 });
      await packCpio(join(tmp, 'fs'), join(tmp, 'initrd'), true);
      const argv = qemuArgv({ ...host, kvm: true }, { kernel: kernel.vmlinuz, initrd: join(tmp, 'initrd'), append: APPEND, memoryMb: MIN_MICROVM_MB, vcpus: 1 });
      const problem = await new Promise<string | undefined>((resolve) => {
        const c = spawnProbeVm(argv[0] as string, argv.slice(1));
        let out = '';
        let done = false;
        const finish = (v: string | undefined): void => {
          if (done) return;
          done = true;
          clearTimeout(t);
          c.kill('SIGKILL');
          resolve(v);
        };
        const t = setTimeout(() => finish('Linux did not boot under KVM within 8 s'), 8000);
        c.stdout.on('data', (d: Buffer) => {
          out = (out + d.toString()).slice(-4000);
          if (out.includes('oak-kvm-ok')) finish(undefined);
        });
        c.stderr.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
        c.on('error', (e) => finish(e.message));
        c.on('exit', () => finish(out.includes('oak-kvm-ok') ? undefined : 'Linux did not boot under KVM'));
      });
      for (const memo of memos) {
        try {
          await mkdir(join(memo, '..'), { recursive: true, mode: 0o700 });
          await writeFile(memo, JSON.stringify({ problem: problem ?? null }));
          break;
        } catch {
          /* a read-only kernel directory: the data dir */
        }
      }
      return problem;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** busybox + the virtio-net modules, one archive per kernel */
  #baseCpio(kernel: MicrovmKernel, cacheDir: string): Promise<string> {
    this.#base ??= (async () => {
      const bs = await stat(BUSYBOX);
      const key = createHash('sha256').update(JSON.stringify([kernel.vmlinuz, kernel.version, bs.size, bs.mtimeMs, NET_MODULES])).digest('hex').slice(0, 24);
      const dir = join(cacheDir, 'microvm');
      const out = join(dir, `base-${key}.cpio`);
      if (existsSync(out)) return out;
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const tmp = join(dir, `base-tmp-${randomBytes(6).toString('hex')}`);
      try {
        await mkdir(join(tmp, 'fs', '.oak', 'modules'), { recursive: true });
        await copyFile(BUSYBOX, join(tmp, 'fs', '.oak', 'busybox'));
        await chmod(join(tmp, 'fs', '.oak', 'busybox'), 0o755);
        for (const [m, p] of kernel.modules) await copyFile(p, join(tmp, 'fs', '.oak', 'modules', `${m}.ko`));
        await packCpio(join(tmp, 'fs'), join(tmp, 'base.cpio'), true);
        await rename(join(tmp, 'base.cpio'), out);
        return out;
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    })();
    this.#base.catch(() => (this.#base = undefined));
    return this.#base;
  }

  async launch(spec: InstanceSpec, ctx: LaunchContext): Promise<Launch> {
    const ready = await this.#prepare();
    if (typeof ready === 'string') throw new RuntimeError('unavailable', ready);
    const memoryMb = spec.memory_mb !== undefined && spec.memory_mb > 0 ? Math.ceil(spec.memory_mb) : DEFAULT_MICROVM_MB;
    if (memoryMb < MIN_MICROVM_MB) throw new RuntimeError('invalid_spec', `a microvm needs memory >= ${MIN_MICROVM_MB} MB (its guest kernel and initramfs live in its RAM); the SLA asks for ${memoryMb} MB`);
    const vcpus = Math.max(1, Math.min(64, Math.ceil(spec.vcpus ?? 1)));
    const volumes = await this.#checkVolumes(spec, ready.kernel);
    // the login for the image's own registry (a login for another host is not this pull's business)
    const auth = spec.registryAuth;
    const login: PullLogin | undefined = auth !== undefined && auth.host === registryHost(normalizeRef(spec.code)) ? { username: auth.username, password: auth.password, dir: ctx.dir } : undefined;
    this.#images ??= new RootfsCache(join(ctx.cacheDir, 'microvm', 'images'), { plainHttpRegistries: this.#opts.plainHttpRegistries, timeoutMs: this.#opts.pullTimeoutMs });
    const [image, base] = await Promise.all([this.#images.get(spec.code, login), this.#baseCpio(ready.kernel, ctx.cacheDir)]);
    const run = planRun(image.run, spec);
    const user = resolveUser(image.run.user, image.run.passwd, image.run.group);
    if (typeof user === 'string') throw new RuntimeError('invalid_image', `image ${spec.code}: ${user}`);
    if (!run.env.some((kv) => kv.startsWith('HOME='))) run.env.push(`HOME=${user.home}`);
    const files = spec.files ?? [];
    for (const f of files) {
      if (!f.target.startsWith('/') || f.target.split('/').includes('..') || f.target === '/') throw new RuntimeError('invalid_spec', `added file path ${JSON.stringify(f.target)} is not an absolute path without ".."`);
    }
    let resolv: string | undefined;
    if (spec.resolvConf !== undefined) resolv = (await readFile(spec.resolvConf, 'utf8').catch(() => '')).slice(0, 64 * 1024);
    let net: GuestNet | undefined;
    if (spec.netns !== undefined) {
      const [nsenter, ip] = await Promise.all([ctx.tool('nsenter'), ctx.tool('ip')]);
      net = await setupInstanceNet(nsenter, ip, spec.netns, this.#netDir, spec.id);
    }
    // the per-instance archive: /init (and resolv.conf, the added files), last so that it wins over the image's
    const fs = join(ctx.dir, 'initfs');
    await mkdir(join(fs, 'etc'), { recursive: true });
    await writeFile(join(fs, 'init'), initScript({
      ...run, workdir: image.run.workdir, net, hostname: spec.id.slice(0, 63), user,
      files: files.map((f) => ({ target: f.target, mode: f.mode })), volumes: volumes.map((v) => ({ target: v.target, readonly: v.readonly })),
    }), { mode: 0o755 });
    if (resolv !== undefined && resolv !== '') await writeFile(join(fs, 'etc', 'resolv.conf'), resolv);
    if (files.length > 0) {
      await mkdir(join(fs, '.oak', 'files'), { recursive: true });
      for (const [i, f] of files.entries()) {
        try {
          await copyFile(f.source, join(fs, '.oak', 'files', String(i)));
        } catch (e) {
          throw new RuntimeError('files_failed', `cannot place added file ${f.target}: ${(e as Error).message}`, { cause: e });
        }
      }
    }
    await packCpio(fs, join(ctx.dir, 'init.cpio'), true);
    await rm(fs, { recursive: true, force: true });
    const initrd = join(ctx.dir, 'initrd');
    await pexec('/bin/sh', ['-c', 'cat "$1" "$2" "$3" > "$4"', 'sh', image.cpio, base, join(ctx.dir, 'init.cpio'), initrd], { timeout: 120_000 });
    await rm(join(ctx.dir, 'init.cpio'), { force: true });
    const sockets = volumes.map((_, i) => join(ctx.dir, `vfs${i}.sock`));
    const qemu = qemuArgv(ready.host, { kernel: ready.kernel.vmlinuz, initrd, append: this.#append, memoryMb, vcpus, tap: net?.tap, mac: net === undefined ? undefined : guestMac(spec.id), virtiofs: sockets.length > 0 ? sockets : undefined });
    const out: Launch = { argv: qemu, executable: ready.host.binary, ownEnv: true, keepUser: true, noResolvConf: true, cgroupMemoryMb: memoryMb + qemuOverheadMb(memoryMb) + VIRTIOFSD_MB * volumes.length };
    if (volumes.length > 0) {
      const [unshare, mount] = await Promise.all([ctx.tool('unshare'), ctx.tool('mount')]).catch(() => {
        throw new RuntimeError('unavailable', 'read-only microvm volumes need unshare and mount (util-linux)');
      });
      const script = join(ctx.dir, 'start.sh');
      await writeFile(script, startScript(volumes.map((v, i) => ({ ...v, socket: sockets[i] as string })), qemu, { virtiofsd: volumes[0]?.virtiofsd as string, unshare, mount }), { mode: 0o700 });
      out.argv = ['/bin/sh', script];
    }
    return out;
  }

  /** the volumes (directories, each shared by its own virtiofsd), or why this VM cannot have them */
  async #checkVolumes(spec: InstanceSpec, kernel: MicrovmKernel): Promise<(NonNullable<InstanceSpec['mounts']>[number] & { virtiofsd: string })[]> {
    const mounts = spec.mounts ?? [];
    if (mounts.length === 0) return [];
    if (mounts.length > MAX_VOLUMES) throw new RuntimeError('invalid_spec', `a microvm takes at most ${MAX_VOLUMES} volumes; the SLA has ${mounts.length}`);
    const missing = FS_MODULES.filter((m) => !kernel.modules.has(m));
    if (missing.length > 0) throw new RuntimeError('unsupported', `microvm volumes need virtiofs in the guest kernel; ${kernel.version} lacks ${missing.join(', ')}`);
    const virtiofsd = await findVirtiofsd();
    if (virtiofsd === undefined) throw new RuntimeError('unsupported', `microvm volumes need virtiofsd (${VIRTIOFSD.join(', ')}; Debian: qemu-system-common or virtiofsd)`);
    if (process.getuid?.() !== 0) throw new RuntimeError('unsupported', 'microvm volumes need a NodeEngine running as root (virtiofsd sandboxes itself in namespaces)');
    const out = [];
    for (const m of mounts) {
      if (!m.target.startsWith('/') || m.target === '/' || m.target.split('/').includes('..')) throw new RuntimeError('invalid_spec', `volume target ${JSON.stringify(m.target)} is not an absolute path without ".."`);
      if (/[,\n\0]/.test(m.source)) throw new RuntimeError('invalid_spec', `volume source ${JSON.stringify(m.source)} has a comma or a newline`);
      const st = await stat(m.source).catch(() => undefined);
      if (st === undefined) throw new RuntimeError('invalid_spec', `volume source ${m.source} does not exist on this worker`);
      if (!st.isDirectory()) throw new RuntimeError('unsupported', `volume source ${m.source} is a file: a microvm shares directories only (mount its directory, or use added_files)`);
      out.push({ ...m, virtiofsd });
    }
    return out;
  }

  verdict(raw: RawExit, spec: InstanceSpec): ExitVerdict {
    const line = raw.code === 0 ? readExitLine(join(this.#dataDir, 'instances', spec.id, 'log')) : undefined;
    const mb = spec.memory_mb !== undefined && spec.memory_mb > 0 ? Math.ceil(spec.memory_mb) : DEFAULT_MICROVM_MB;
    return microvmVerdict(raw, line, mb);
  }

  release(spec: InstanceSpec): Promise<void> {
    return releaseInstanceNet(this.#netDir, spec.id);
  }
}

export class MicrovmRuntime extends SupervisedRuntime {
  constructor(opts: MicrovmRuntimeOptions) {
    super(new MicrovmLauncher(opts.dataDir, opts), opts);
  }
}
