/**
 * `unikernel` virtualization (Oakestra-compatible): `code` is the URL of a `.tar.gz` holding
 * `kernel` (and optionally `initrd` and a `files/` folder shared with the guest over 9p), or of a
 * bare kernel image; comma-separated URLs are matched by index to the SLA's `arch` list (label
 * `oak.arch`). The kernel boots in qemu (../qemu) under the shared supervisor: the serial console is
 * the log, the guest's isa-debug-exit value is the exit code, `cmd` then `args` are appended to
 * the kernel command line, the SLA's added files join the image's `files/` in the 9p share, and in an instance network namespace the guest takes the instance's address
 * (passed as `netdev.ipv4_addr=... netdev.ipv4_gw_addr=... netdev.ipv4_subnet_mask=...`).
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cp, open, lstat, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { arch as hostArch } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { goArchOf, normalizeArch } from '@oak/contracts';
import { RuntimeError } from '../types.ts';
import type { InstanceSpec, ProbeResult } from '../types.ts';
import type { Launch, LaunchContext, Launcher } from '../supervisor/launcher.ts';
import { SupervisedRuntime } from '../supervisor/supervisor.ts';
import type { SupervisorOptions } from '../supervisor/supervisor.ts';
import type { ExitVerdict, RawExit } from '../supervisor/verdict.ts';
import { downloadFile } from '../supervisor/download.ts';
import { probeQemu, qemuArgv, qemuProbeResult, qemuVerdict } from '../qemu/index.ts';
import { guestMac, releaseInstanceNet, setupInstanceNet } from '../qemu/tap.ts';
import type { GuestNet } from '../qemu/tap.ts';

const pexec = promisify(execFile);
export const LABEL_ARCH = 'oak.arch';
export const DEFAULT_UNIKERNEL_MB = 64;
export const MAX_CODE_LENGTH = 8192;
/** x86's kernel command line limit */
export const MAX_CMDLINE = 2048;

export interface UnikernelOptions {
  /** largest download (default 256 MiB) */
  maxDownloadBytes?: number | undefined;
  downloadTimeoutMs?: number | undefined;
}

export type UnikernelRuntimeOptions = SupervisorOptions & UnikernelOptions;

/** memory the cgroup allows qemu itself beyond the guest's RAM */
export function qemuOverheadMb(guestMb: number): number {
  return 96 + Math.ceil(guestMb / 8);
}

/**
 * The one URL of `code` for this host: by index in the arch list when there are several, the
 * list's names read through the contracts' one architecture table (`x86_64` is `amd64`). `host`
 * is Node's name (`process.arch`: `x64`) or Go's (`amd64`).
 */
export function pickUrl(code: string, archList: string[] | undefined, host: string = hostArch()): string {
  if (code.length > MAX_CODE_LENGTH) throw new RuntimeError('invalid_code', `code is longer than ${MAX_CODE_LENGTH} characters`);
  const urls = code.split(',').map((u) => u.trim());
  if (urls.some((u) => u === '')) throw new RuntimeError('invalid_code', 'code has an empty URL in its comma-separated list');
  if (urls.length === 1) return urls[0] as string;
  if (archList === undefined || archList.length === 0) throw new RuntimeError('invalid_code', `code has ${urls.length} URLs but the SLA has no arch list to match them to`);
  if (archList.length !== urls.length) throw new RuntimeError('invalid_code', `code has ${urls.length} URLs but the arch list has ${archList.length} entries`);
  const want = goArchOf(host);
  const i = archList.findIndex((a) => normalizeArch(a) === want);
  if (i < 0) throw new RuntimeError('unsupported_arch', `no URL for this worker's architecture (${want}) in the arch list ${JSON.stringify(archList)}`);
  return urls[i] as string;
}

export function kernelCmdline(cmd: string[] | undefined, net: GuestNet | undefined): string {
  const parts: string[] = [];
  if (net !== undefined) {
    parts.push(`netdev.ipv4_addr=${net.ip}`, `netdev.ipv4_subnet_mask=${net.mask}`);
    if (net.gateway !== undefined) parts.push(`netdev.ipv4_gw_addr=${net.gateway}`);
  }
  for (const c of cmd ?? []) {
    if (/[\u0000-\u001f\u007f]/.test(c)) throw new RuntimeError('invalid_spec', `cmd entry ${JSON.stringify(c.slice(0, 60))} has a control character`);
    parts.push(c);
  }
  const s = parts.join(' ');
  if (s.length > MAX_CMDLINE) throw new RuntimeError('invalid_spec', `the kernel command line would be ${s.length} characters (at most ${MAX_CMDLINE})`);
  return s;
}

interface Image {
  kernel: string;
  initrd?: string | undefined;
  share?: string | undefined;
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await lstat(p)).isFile();
  } catch {
    return false;
  }
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await lstat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** ELF, or a Linux bzImage ("HdrS" at 0x202) */
async function looksLikeKernel(p: string): Promise<boolean> {
  const fh = await open(p, 'r');
  try {
    const b = Buffer.alloc(0x206);
    const { bytesRead } = await fh.read(b, 0, b.length, 0);
    if (bytesRead >= 4 && b.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) return true;
    return bytesRead >= 0x206 && b.subarray(0x202, 0x206).toString('latin1') === 'HdrS';
  } finally {
    await fh.close();
  }
}

export class UnikernelLauncher implements Launcher {
  readonly virtualization = 'unikernel' as const;
  /** the instance's own 9p share when the SLA has added files (the image's files/ copied beside them) */
  readonly filesDir = 'share';
  readonly #netDir: string;
  readonly #opts: UnikernelOptions;
  readonly #pending = new Map<string, Promise<Image>>();

  constructor(dataDir: string, opts: UnikernelOptions = {}) {
    this.#netDir = join(dataDir, 'net');
    this.#opts = opts;
  }

  probe(_host: { cgroups: boolean; detail: string }): Promise<ProbeResult> {
    return qemuProbeResult('unikernels');
  }

  async launch(spec: InstanceSpec, ctx: LaunchContext): Promise<Launch> {
    const host = await probeQemu();
    if (typeof host === 'string') throw new RuntimeError('unavailable', host);
    const url = pickUrl(spec.code, spec.labels[LABEL_ARCH]?.split(','));
    const image = await this.#image(url, ctx.cacheDir);
    const memoryMb = spec.memory_mb !== undefined && spec.memory_mb > 0 ? Math.ceil(spec.memory_mb) : DEFAULT_UNIKERNEL_MB;
    const vcpus = Math.max(1, Math.min(64, Math.ceil(spec.vcpus ?? 1)));
    let net: GuestNet | undefined;
    const words = [...(spec.cmd ?? []), ...(spec.args ?? [])];
    kernelCmdline(words, undefined); // reject a bad cmd before touching the namespace
    let share = image.share;
    if (spec.files !== undefined && spec.files.length > 0) {
      // the added files are in place (the supervisor put them there); the image's own files join
      // them without replacing any, so a unikernel gets both in the one share it can mount
      share = join(ctx.work, this.filesDir);
      if (image.share !== undefined) await cp(image.share, share, { recursive: true, force: false, errorOnExist: false });
    }
    if (spec.netns !== undefined) {
      const [nsenter, ip] = await Promise.all([ctx.tool('nsenter'), ctx.tool('ip')]);
      net = await setupInstanceNet(nsenter, ip, spec.netns, this.#netDir, spec.id);
    }
    const mac = guestMac(spec.id);
    const argv = qemuArgv(host, { kernel: image.kernel, initrd: image.initrd, share, append: kernelCmdline(words, net), memoryMb, vcpus, tap: net?.tap, mac });
    return { argv, executable: host.binary, ownEnv: true, keepUser: true, noResolvConf: true, cgroupMemoryMb: memoryMb + qemuOverheadMb(memoryMb) };
  }

  verdict(raw: RawExit, _spec: InstanceSpec): ExitVerdict {
    return qemuVerdict(raw);
  }

  release(spec: InstanceSpec): Promise<void> {
    return releaseInstanceNet(this.#netDir, spec.id);
  }

  /** the kernel (and initrd, files/) of `url`, from the cache keyed by the content's sha256 */
  #image(url: string, cacheDir: string): Promise<Image> {
    let p = this.#pending.get(url);
    if (p === undefined) {
      p = this.#fetchImage(url, join(cacheDir, 'unikernel')).finally(() => this.#pending.delete(url));
      this.#pending.set(url, p);
    }
    return p;
  }

  async #fetchImage(url: string, root: string): Promise<Image> {
    let local: string | undefined;
    if (/^file:/i.test(url)) {
      try {
        local = fileURLToPath(url);
      } catch (e) {
        throw new RuntimeError('invalid_code', `code ${JSON.stringify(url)} is not a valid file URL`, { cause: e });
      }
    } else if (isAbsolute(url)) local = url;
    else if (!/^https?:\/\//i.test(url)) throw new RuntimeError('invalid_code', `code ${JSON.stringify(url.slice(0, 200))} must be an http(s) URL of a kernel or a .tar.gz with one (or an absolute path)`);
    await mkdir(root, { recursive: true });
    const index = join(root, `url-${createHash('sha256').update(url).digest('hex').slice(0, 32)}`);
    if (local === undefined) {
      try {
        const sha = (await readFile(index, 'utf8')).trim();
        const img = await this.#cached(join(root, sha));
        if (img !== undefined) return img;
      } catch {
        /* not cached yet */
      }
    }
    const tmp = join(root, `dl-${randomBytes(6).toString('hex')}`);
    try {
      let file: string;
      let sha: string;
      if (local !== undefined) {
        try {
          if (!(await stat(local)).isFile()) throw new Error('not a file');
        } catch {
          throw new RuntimeError('code_not_found', `kernel ${local} does not exist or is not a file`);
        }
        file = local;
        sha = createHash('sha256').update(await readFile(local)).digest('hex');
      } else {
        const d = await downloadFile(url, `${tmp}.bin`, { maxBytes: this.#opts.maxDownloadBytes ?? 256 * 1024 * 1024, timeoutMs: this.#opts.downloadTimeoutMs });
        file = d.path;
        sha = d.sha256;
      }
      const dest = join(root, sha);
      let img = await this.#cached(dest);
      if (img === undefined) {
        await rm(dest, { recursive: true, force: true });
        await mkdir(tmp, { recursive: true });
        const head = Buffer.alloc(2);
        const fh = await open(file, 'r');
        try {
          await fh.read(head, 0, 2, 0);
        } finally {
          await fh.close();
        }
        if (head[0] === 0x1f && head[1] === 0x8b) {
          try {
            await pexec('tar', ['-xzf', file, '-C', tmp, '--no-same-owner', '--no-same-permissions', '--no-overwrite-dir'], { timeout: 60000, maxBuffer: 1 << 20 });
          } catch (e) {
            throw new RuntimeError('invalid_code', `${url} is not a readable .tar.gz: ${((e as { stderr?: string }).stderr ?? (e as Error).message).trim().split('\n')[0] ?? ''}`);
          }
          if (!(await isFile(join(tmp, 'kernel')))) throw new RuntimeError('invalid_code', `the archive ${url} has no regular file named kernel at its top`);
        } else {
          await writeFile(join(tmp, 'kernel'), await readFile(file));
        }
        if (!(await looksLikeKernel(join(tmp, 'kernel')))) throw new RuntimeError('invalid_code', `${url}: kernel is neither an ELF (multiboot/PVH) image nor a Linux bzImage`);
        await rename(tmp, dest).catch(async (e: unknown) => {
          if ((await this.#cached(dest)) === undefined) throw e;
        });
        img = await this.#cached(dest);
        if (img === undefined) throw new RuntimeError('invalid_code', `${url}: the unpacked kernel vanished`);
      }
      if (local === undefined) await writeFile(index, sha);
      return img;
    } finally {
      await rm(tmp, { recursive: true, force: true });
      await rm(`${tmp}.bin`, { force: true });
    }
  }

  async #cached(dir: string): Promise<Image | undefined> {
    const kernel = join(dir, 'kernel');
    if (!(await isFile(kernel))) return undefined;
    const initrd = join(dir, 'initrd');
    const share = join(dir, 'files');
    return { kernel, initrd: (await isFile(initrd)) ? initrd : undefined, share: (await isDir(share)) ? share : undefined };
  }
}

export class UnikernelRuntime extends SupervisedRuntime {
  constructor(opts: UnikernelRuntimeOptions) {
    super(new UnikernelLauncher(opts.dataDir, opts), opts);
  }
}
