/**
 * A microvm's root filesystem: an OCI image (the same references as containers: `normalizeRef`,
 * plain HTTP for loopback registries and `plainHttpRegistries`, as ../containerd/image.ts) pulled
 * with skopeo into a temporary OCI layout, unpacked with umoci and packed as an initramfs
 * (`cpio -H newc`). Cached by the sha256 of the registry's manifest: a second start of the same
 * image asks the registry for the manifest only (`skopeo inspect --raw`).
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RuntimeError } from '../types.ts';
import { goArch, isPlainHttp, normalizeRef } from '../containerd/image.ts';

const pexec = promisify(execFile);

/** what the guest's init needs from the image config */
export interface ImageRun {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workdir: string;
  user: string;
}

export interface RootfsImage {
  /** the image's root filesystem as a newc cpio archive */
  cpio: string;
  run: ImageRun;
}

export interface PullOptions {
  plainHttpRegistries?: string[] | undefined;
  timeoutMs?: number | undefined;
}

function stderrOf(e: unknown): string {
  const s = ((e as { stderr?: string }).stderr ?? (e as Error).message).trim();
  return s.split('\n').filter((l) => l.trim() !== '').pop() ?? s;
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

interface Descriptor { digest: string; mediaType?: string; platform?: { os?: string; architecture?: string } }

/** the image config of the (single) image of an OCI layout */
async function layoutConfig(layout: string): Promise<ImageRun> {
  const blob = async (digest: string): Promise<Record<string, unknown>> => {
    if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new Error(`bad digest ${digest.slice(0, 80)}`);
    return JSON.parse(await readFile(join(layout, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as Record<string, unknown>;
  };
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests?: Descriptor[] };
  let m: Record<string, unknown> = await blob(index.manifests?.[0]?.digest ?? '');
  if (Array.isArray(m['manifests']) && m['config'] === undefined) {
    const want = goArch();
    const d = (m['manifests'] as Descriptor[]).find((x) => (x.platform?.os ?? 'linux') === 'linux' && (x.platform?.architecture ?? want) === want);
    if (d === undefined) throw new Error(`no linux/${want} manifest`);
    m = await blob(d.digest);
  }
  const cfgDesc = m['config'] as Descriptor | undefined;
  if (cfgDesc === undefined) throw new Error('the manifest has no config');
  const cfg = ((await blob(cfgDesc.digest))['config'] ?? {}) as Record<string, unknown>;
  return {
    entrypoint: strings(cfg['Entrypoint']),
    cmd: strings(cfg['Cmd']),
    env: strings(cfg['Env']),
    workdir: typeof cfg['WorkingDir'] === 'string' && cfg['WorkingDir'] !== '' ? cfg['WorkingDir'] : '/',
    user: typeof cfg['User'] === 'string' ? cfg['User'] : '',
  };
}

export class RootfsCache {
  readonly #root: string;
  readonly #opts: PullOptions;
  readonly #pending = new Map<string, Promise<RootfsImage>>();

  constructor(root: string, opts: PullOptions = {}) {
    this.#root = root;
    this.#opts = opts;
  }

  /** the initramfs of image `code`, pulled and packed once per manifest */
  get(code: string): Promise<RootfsImage> {
    const ref = normalizeRef(code);
    let p = this.#pending.get(ref);
    if (p === undefined) {
      p = this.#get(ref).finally(() => this.#pending.delete(ref));
      this.#pending.set(ref, p);
    }
    return p;
  }

  async #get(ref: string): Promise<RootfsImage> {
    if (!/^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,510}$/.test(ref)) throw new RuntimeError('invalid_code', `image reference ${JSON.stringify(ref.slice(0, 200))} is not valid`);
    const tls = isPlainHttp(ref, this.#opts.plainHttpRegistries) ? ['--src-tls-verify=false'] : [];
    const timeout = this.#opts.timeoutMs ?? 300_000;
    const pull = (e: unknown): RuntimeError => new RuntimeError('image_pull_failed', `cannot pull image ${ref}: ${stderrOf(e)}`, { cause: e });
    let raw: string;
    try {
      raw = (await pexec('skopeo', ['inspect', '--raw', ...tls.map((f) => f.replace('src-', '')), `docker://${ref}`], { timeout, maxBuffer: 4 << 20 })).stdout;
    } catch (e) {
      throw pull(e);
    }
    const key = createHash('sha256').update(raw).digest('hex');
    const dest = join(this.#root, key);
    const cached = await this.#cached(dest);
    if (cached !== undefined) return cached;
    await mkdir(this.#root, { recursive: true, mode: 0o700 });
    const tmp = join(this.#root, `tmp-${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(tmp, { mode: 0o700 });
      const layout = join(tmp, 'oci');
      try {
        await pexec('skopeo', ['copy', '--quiet', ...tls, `docker://${ref}`, `oci:${layout}:img`], { timeout, maxBuffer: 4 << 20 });
      } catch (e) {
        throw pull(e);
      }
      const run = await layoutConfig(layout).catch((e: unknown) => {
        throw new RuntimeError('invalid_image', `image ${ref}: ${(e as Error).message}`);
      });
      const bundle = join(tmp, 'bundle');
      // as root the files keep their owners; otherwise they all become the caller's (--rootless)
      const rootless = process.getuid?.() === 0 ? [] : ['--rootless'];
      try {
        await pexec('umoci', ['unpack', ...rootless, '--image', `${layout}:img`, bundle], { timeout, maxBuffer: 4 << 20 });
      } catch (e) {
        throw new RuntimeError('invalid_image', `cannot unpack image ${ref}: ${stderrOf(e)}`, { cause: e });
      }
      const out = join(tmp, 'out');
      await mkdir(out);
      await packCpio(join(bundle, 'rootfs'), join(out, 'rootfs.cpio'), process.getuid?.() !== 0);
      await writeFile(join(out, 'run.json'), JSON.stringify(run));
      await rename(out, dest).catch(async (e: unknown) => {
        if ((await this.#cached(dest)) === undefined) throw e;
      });
      const img = await this.#cached(dest);
      if (img === undefined) throw new RuntimeError('invalid_image', `image ${ref}: the packed root filesystem vanished`);
      return img;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  async #cached(dir: string): Promise<RootfsImage | undefined> {
    const cpio = join(dir, 'rootfs.cpio');
    if (!existsSync(cpio)) return undefined;
    try {
      return { cpio, run: JSON.parse(await readFile(join(dir, 'run.json'), 'utf8')) as ImageRun };
    } catch {
      return undefined;
    }
  }
}

/** `dir` as a newc cpio archive at `out` (owned by root in the guest when `rootOwned`) */
export async function packCpio(dir: string, out: string, rootOwned: boolean): Promise<void> {
  const owner = rootOwned ? ' -R 0:0' : '';
  try {
    await pexec('/bin/sh', ['-c', `cd "$1" && find . -print0 | cpio --null -o -H newc --quiet${owner} > "$2"`, 'sh', dir, out], { timeout: 300_000, maxBuffer: 1 << 20 });
  } catch (e) {
    throw new RuntimeError('spawn_failed', `cannot pack ${dir} as an initramfs: ${stderrOf(e)}`, { cause: e });
  }
}
