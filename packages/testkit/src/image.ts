/**
 * Builds the team's test image without internet: Debian's static busybox with all its applets
 * linked into /bin, assembled as an OCI layout with umoci and pushed to a registry with skopeo.
 * The built layout is cached (by content) under `$OAK_TESTKIT_CACHE` or `/tmp/oak-testkit-cache`,
 * so only the first build of a machine pays for umoci (later ones only push, ~100 ms).
 */
import { createHash } from 'node:crypto';
import { chmod, mkdir, rename, rm, stat, symlink, writeFile, copyFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, shortId } from './util.ts';

export interface BusyboxImageOptions {
  /** repository path in the registry, default `library/busybox` */
  name?: string;
  /** default `1` */
  tag?: string;
  /** image default command, default `['sh', '-c', 'echo hello from busybox; sleep 3600']` */
  cmd?: string[];
  /** image environment, default `['PATH=/bin:/sbin:/usr/bin:/usr/sbin']` plus these */
  env?: string[];
  /** extra files: path inside the image -> content */
  files?: Record<string, string>;
  /** the image's `User` (config.user), default none (root) */
  user?: string;
  /** the image's `WorkingDir`, default `/` */
  workdir?: string;
  /** the registry's login (a registry started with `auth`): pushed with `skopeo --dest-creds` */
  creds?: { username: string; password: string };
}

export const BUSYBOX_DEFAULT_CMD = ['sh', '-c', 'echo hello from busybox; sleep 3600'];
/** served by `httpd -f -p <port> -h /www` */
export const BUSYBOX_INDEX_HTML = 'hello from oak busybox\n';
const BUSYBOX = '/bin/busybox';
const TAG = 'busybox';

const building = new Map<string, Promise<string>>();

export function imageCacheDir(): string {
  return process.env.OAK_TESTKIT_CACHE ?? join(tmpdir(), 'oak-testkit-cache');
}

/**
 * Builds (or reuses) the busybox OCI layout and pushes it to `registry` (`127.0.0.1:<port>` or an
 * object with `url`). Returns the pushed reference, e.g. `127.0.0.1:5055/library/busybox:1`.
 */
export async function buildBusyboxImage(registry: string | { url: string }, opts: BusyboxImageOptions = {}): Promise<string> {
  const url = typeof registry === 'string' ? registry : registry.url;
  const ref = `${url}/${opts.name ?? 'library/busybox'}:${opts.tag ?? '1'}`;
  const layout = await busyboxLayout(opts);
  const creds = opts.creds ? ['--dest-creds', `${opts.creds.username}:${opts.creds.password}`] : [];
  await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', ...creds, `oci:${layout}:${TAG}`, `docker://${ref}`], { timeoutMs: 60_000 });
  return ref;
}

/** path of the cached OCI layout (tag `busybox`) for these options; builds it if absent */
export async function busyboxLayout(opts: BusyboxImageOptions = {}): Promise<string> {
  const st = await stat(BUSYBOX);
  const cmd = opts.cmd ?? BUSYBOX_DEFAULT_CMD;
  const env = ['PATH=/bin:/sbin:/usr/bin:/usr/sbin', ...(opts.env ?? [])];
  const key = createHash('sha256')
    .update(JSON.stringify({ v: 1, size: st.size, mtime: st.mtimeMs, cmd, env, files: opts.files ?? {}, ...(opts.user !== undefined ? { user: opts.user } : {}), ...(opts.workdir !== undefined ? { workdir: opts.workdir } : {}) }))
    .digest('hex')
    .slice(0, 16);
  const cache = imageCacheDir();
  const final = join(cache, `busybox-${key}`);
  if (existsSync(join(final, 'index.json'))) return final;
  let p = building.get(key);
  if (!p) {
    p = build(cache, final, cmd, env, opts.files ?? {}, opts.user, opts.workdir ?? '/');
    building.set(key, p);
    p.catch(() => building.delete(key));
  }
  return p;
}

async function build(cache: string, final: string, cmd: string[], env: string[], files: Record<string, string>, user: string | undefined, workdir: string): Promise<string> {
  await mkdir(cache, { recursive: true });
  const work = join(cache, `build-${process.pid}-${shortId()}`);
  await mkdir(work, { recursive: true });
  try {
    const layout = join(work, 'oci');
    const image = `${layout}:${TAG}`;
    const bundle = join(work, 'bundle');
    await run('umoci', ['init', '--layout', layout]);
    await run('umoci', ['new', '--image', image]);
    await run('umoci', ['unpack', '--image', image, bundle]);
    const rootfs = join(bundle, 'rootfs');
    await populate(rootfs, files);
    await run('umoci', ['repack', '--image', image, bundle]);
    const cfg = ['config', '--image', image, '--config.workingdir', workdir];
    if (user !== undefined) cfg.push('--config.user', user);
    for (const c of cmd) cfg.push('--config.cmd', c);
    for (const e of env) cfg.push('--config.env', e);
    await run('umoci', cfg);
    await run('umoci', ['gc', '--layout', layout]);
    try {
      await rename(layout, final);
    } catch (err) {
      // another process built the same layout first: use theirs
      if (!existsSync(join(final, 'index.json'))) throw err;
    }
    return final;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function populate(rootfs: string, files: Record<string, string>): Promise<void> {
  for (const d of ['bin', 'etc', 'root', 'tmp', 'www', 'proc', 'sys', 'dev', 'var/log', 'home', 'usr']) {
    await mkdir(join(rootfs, d), { recursive: true });
  }
  await chmod(join(rootfs, 'tmp'), 0o1777);
  await copyFile(BUSYBOX, join(rootfs, 'bin/busybox'));
  await chmod(join(rootfs, 'bin/busybox'), 0o755);
  const list = (await run(BUSYBOX, ['--list'])).stdout.split('\n').map((s) => s.trim()).filter((s) => s && s !== 'busybox');
  for (const applet of list) await symlink('busybox', join(rootfs, 'bin', applet));
  await symlink('bin', join(rootfs, 'sbin'));
  await symlink('../bin', join(rootfs, 'usr/bin'));
  await symlink('../bin', join(rootfs, 'usr/sbin'));
  await writeFile(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n');
  await writeFile(join(rootfs, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  await writeFile(join(rootfs, 'etc/hosts'), '127.0.0.1 localhost\n::1 localhost\n');
  await writeFile(join(rootfs, 'www/index.html'), BUSYBOX_INDEX_HTML);
  for (const [p, content] of Object.entries(files)) {
    const target = join(rootfs, p);
    await mkdir(join(target, '..'), { recursive: true });
    await writeFile(target, content);
  }
}
