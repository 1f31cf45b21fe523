/**
 * A microvm's root filesystem: an OCI image (the same references as containers: `normalizeRef`,
 * plain HTTP for loopback registries and `plainHttpRegistries`, as ../containerd/image.ts) pulled
 * with skopeo into a temporary OCI layout, unpacked with umoci and packed as an initramfs
 * (`cpio -H newc`). Cached by the sha256 of the registry's manifest: a second start of the same
 * image asks the registry for the manifest only (`skopeo inspect --raw`), with the organisation's
 * login when it has one for the image's registry: so an image pulled once with a login is not
 * handed to a start without it. The login reaches skopeo in an auth file (mode 0600, in the
 * instance's private directory, removed when the pull is over), never on a command line.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RuntimeError } from '../types.ts';
import { goArch, isPlainHttp, normalizeRef, registryHost } from '../containerd/image.ts';
import type { RegistryLogin } from '../containerd/auth-relay.ts';

const pexec = promisify(execFile);

/** what the guest's init needs from the image config */
export interface ImageRun {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workdir: string;
  user: string;
  /** the image's /etc/passwd and /etc/group (capped), to resolve `user` on the host */
  passwd?: string | undefined;
  group?: string | undefined;
}

/** the layout of run.json; an older cache entry (without passwd/group) is pulled again */
const RUN_VERSION = 2;
/** at most this much of the image's /etc/passwd and /etc/group is kept */
const MAX_ACCOUNTS_BYTES = 256 * 1024;
/** the auth file skopeo reads the login from, in the instance's private directory */
export const AUTH_FILE = 'registry-auth.json';

export interface RootfsImage {
  /** the image's root filesystem as a newc cpio archive */
  cpio: string;
  run: ImageRun;
}

/** a registry login for one pull: where its auth file goes (the instance's private directory, 0700) */
export interface PullLogin extends RegistryLogin {
  dir: string;
}

export interface PullOptions {
  plainHttpRegistries?: string[] | undefined;
  timeoutMs?: number | undefined;
}

/** a regular file of the unpacked root filesystem (no symbolic link followed), capped; '' when absent */
async function rootfsFile(rootfs: string, rel: string): Promise<string> {
  let d = rootfs;
  for (const part of rel.split('/')) {
    d = join(d, part);
    const st = await lstat(d).catch(() => undefined);
    if (st === undefined || st.isSymbolicLink()) return '';
  }
  const fh = await open(d, 'r');
  try {
    const b = Buffer.alloc(MAX_ACCOUNTS_BYTES);
    const { bytesRead } = await fh.read(b, 0, b.length, 0);
    return b.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

/** what a refused or missing login looks like in skopeo's errors */
const AUTH_RE = /\b401\b|unauthorized|authentication required|invalid username\/password|no basic auth credentials/i;

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

  /**
   * the initramfs of image `code`, pulled and packed once per manifest; `login` (for the image's
   * registry, else ignored) is used for the manifest and the pull
   */
  get(code: string, login?: PullLogin): Promise<RootfsImage> {
    const ref = normalizeRef(code);
    const use = login !== undefined && login.username !== '' ? login : undefined;
    // a pull with a login is not shared with one without (nor with another organisation's login)
    const key = use === undefined ? ref : `${ref}\u0000${createHash('sha256').update(`${use.username}\u0000${use.password}`).digest('hex')}`;
    let p = this.#pending.get(key);
    if (p === undefined) {
      p = this.#withAuth(ref, use).finally(() => this.#pending.delete(key));
      this.#pending.set(key, p);
    }
    return p;
  }

  /** the pull with the login's auth file in place (0600, in its own directory), removed afterwards */
  async #withAuth(ref: string, login: PullLogin | undefined): Promise<RootfsImage> {
    if (login === undefined) return this.#get(ref, undefined);
    const host = registryHost(ref);
    const file = join(login.dir, `${AUTH_FILE}.${randomBytes(4).toString('hex')}`);
    const auth = Buffer.from(`${login.username}:${login.password}`, 'utf8').toString('base64');
    // 'wx': never through a file (or link) someone put there; the mode is set at creation
    await writeFile(file, JSON.stringify({ auths: { [host]: { auth } } }), { mode: 0o600, flag: 'wx' });
    try {
      return await this.#get(ref, { file, username: login.username });
    } finally {
      await rm(file, { force: true });
    }
  }

  async #get(ref: string, auth: { file: string; username: string } | undefined): Promise<RootfsImage> {
    if (!/^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,510}$/.test(ref)) throw new RuntimeError('invalid_code', `image reference ${JSON.stringify(ref.slice(0, 200))} is not valid`);
    const tls = isPlainHttp(ref, this.#opts.plainHttpRegistries) ? ['--src-tls-verify=false'] : [];
    const timeout = this.#opts.timeoutMs ?? 300_000;
    const host = registryHost(ref);
    const pull = (e: unknown): RuntimeError => {
      const err = stderrOf(e);
      if (AUTH_RE.test(err)) {
        const msg = auth === undefined
          ? `registry ${host} needs a login and this organisation has none for it: store one with \`oak registry login ${host}\``
          : `registry ${host} refused the login of ${auth.username}: store the right one with \`oak registry login ${host}\``;
        return new RuntimeError('image_pull_failed', `cannot pull image ${ref}: ${msg} (${err.slice(0, 300)})`, { cause: e });
      }
      return new RuntimeError('image_pull_failed', `cannot pull image ${ref}: ${err}`, { cause: e });
    };
    let raw: string;
    try {
      const authArgs = auth === undefined ? [] : ['--authfile', auth.file];
      raw = (await pexec('skopeo', ['inspect', '--raw', ...authArgs, ...tls.map((f) => f.replace('src-', '')), `docker://${ref}`], { timeout, maxBuffer: 4 << 20 })).stdout;
    } catch (e) {
      throw pull(e);
    }
    const key = createHash('sha256').update(raw).digest('hex');
    const dest = join(this.#root, key);
    const cached = await this.#cached(dest);
    if (cached !== undefined) return cached;
    // an entry of an older layout: pulled again
    if (existsSync(dest)) await rm(dest, { recursive: true, force: true });
    await mkdir(this.#root, { recursive: true, mode: 0o700 });
    const tmp = join(this.#root, `tmp-${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(tmp, { mode: 0o700 });
      const layout = join(tmp, 'oci');
      try {
        const authArgs = auth === undefined ? [] : ['--src-authfile', auth.file];
        await pexec('skopeo', ['copy', '--quiet', ...authArgs, ...tls, `docker://${ref}`, `oci:${layout}:img`], { timeout, maxBuffer: 4 << 20 });
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
      run.passwd = await rootfsFile(join(bundle, 'rootfs'), 'etc/passwd').catch(() => '');
      run.group = await rootfsFile(join(bundle, 'rootfs'), 'etc/group').catch(() => '');
      await packCpio(join(bundle, 'rootfs'), join(out, 'rootfs.cpio'), process.getuid?.() !== 0);
      await writeFile(join(out, 'run.json'), JSON.stringify({ ...run, v: RUN_VERSION }));
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
      const { v, ...run } = JSON.parse(await readFile(join(dir, 'run.json'), 'utf8')) as ImageRun & { v?: number };
      return v === RUN_VERSION ? { cpio, run } : undefined;
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
