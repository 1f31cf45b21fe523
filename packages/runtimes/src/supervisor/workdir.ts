/**
 * A supervised instance's work dir beyond a plain directory: a size-limited tmpfs when the SLA
 * gives `storage` (the only disk quota a process can have without filesystem quotas; its pages
 * count against the instance's memory cgroup too), and the SLA's added files copied in.
 */
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { chmod, chown, copyFile, lstat, mkdir, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import { RuntimeError } from '../types.ts';
import type { InstanceSpec } from '../types.ts';
import type { RunAs } from './launcher.ts';

const run = promisify(execFile);

/** the largest tmpfs work dir (MB) */
export const MAX_STORAGE_MB = 1024 * 1024;

/** true when `path` is a mount point (its device differs from its parent's) */
async function isMountPoint(path: string): Promise<boolean> {
  try {
    const [a, b] = await Promise.all([lstat(path), lstat(dirname(path))]);
    return a.dev !== b.dev;
  } catch {
    return false;
  }
}

/** Mounts a tmpfs of `mb` MB on `work` (owned by the workload user), or says why it cannot. */
export async function mountStorage(work: string, mb: number, runAs: RunAs | undefined): Promise<void> {
  if (!(mb > 0) || mb > MAX_STORAGE_MB) throw new RuntimeError('invalid_spec', `storage ${mb} MB is out of range (1-${MAX_STORAGE_MB})`);
  const opts = [`size=${Math.ceil(mb)}m`, 'mode=0700', 'nosuid', 'nodev'];
  if (runAs !== undefined) opts.push(`uid=${runAs.uid}`, `gid=${runAs.gid}`);
  try {
    await run('mount', ['-t', 'tmpfs', '-o', opts.join(','), 'oak-storage', work], { timeout: 10_000 });
  } catch (e) {
    const why = ((e as { stderr?: string }).stderr ?? (e as Error).message).trim().split('\n')[0] ?? '';
    throw new RuntimeError('storage_unavailable', `cannot enforce storage ${mb} MB: mounting a tmpfs work dir failed (${why}); the NodeEngine must run as root`, { cause: e });
  }
}

/**
 * Why `user` cannot reach `path` by name (a directory on the way it may not search), or
 * undefined when it can. A workload dropped to that user opens its files by absolute path (the
 * wasm runner, a downloaded executable), so a work root below a 0700 directory (a test's mkdtemp,
 * root's home) starts nothing; its cwd alone would still work, which hid this. Owner, group and
 * other bits only (setpriv clears the supplementary groups; ACLs are not read).
 */
export function unreachableBy(path: string, user: RunAs): string | undefined {
  const parts = resolve(path).split('/').filter((p) => p !== '');
  let dir = '/';
  for (let i = 0; i <= parts.length; i++) {
    let st;
    try {
      st = statSync(dir);
    } catch {
      return undefined; // not made yet: made by the supervisor (0711), its parents were searchable
    }
    const m = st.mode;
    const ok = st.uid === user.uid ? (m & 0o100) !== 0 : st.gid === user.gid ? (m & 0o010) !== 0 : (m & 0o001) !== 0;
    if (!ok) return `${dir} (mode ${(m & 0o7777).toString(8).padStart(4, '0')}, owner ${st.uid}) may not be searched by ${user.name}, so it cannot reach its work dir ${path}`;
    if (i < parts.length) dir = join(dir, parts[i] as string);
  }
  return undefined;
}

/** Unmounts a tmpfs work dir if there is one, then removes the directory. */
export async function removeWorkDir(work: string): Promise<void> {
  if (await isMountPoint(work)) {
    await run('umount', [work], { timeout: 10_000 }).catch(() => run('umount', ['-l', work], { timeout: 10_000 }).catch(() => undefined));
  }
  await rm(work, { recursive: true, force: true });
}

/** Copies the fetched added files into the work dir (owned by the workload user). */
export async function placeFiles(work: string, files: NonNullable<InstanceSpec['files']>, runAs: RunAs | undefined): Promise<void> {
  for (const f of files) {
    const rel = f.target.replace(/^\/+/, '');
    const dest = join(work, rel);
    const r = relative(work, dest);
    if (rel === '' || r === '' || r.startsWith('..') || r.split(sep).includes('..')) {
      throw new RuntimeError('invalid_spec', `added file path ${JSON.stringify(f.target)} leaves the work dir`);
    }
    try {
      const st = await stat(f.source);
      if (!st.isFile()) throw new Error(`${f.source} is not a file`);
      // parents made one by one so each is owned by the workload user
      let d = work;
      for (const part of rel.split('/').slice(0, -1)) {
        d = join(d, part);
        await mkdir(d, { mode: 0o755 }).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'EEXIST') throw e;
        });
        if ((await lstat(d)).isSymbolicLink()) throw new Error(`${d} is a symbolic link`);
        if (runAs !== undefined) await chown(d, runAs.uid, runAs.gid);
      }
      await copyFile(f.source, dest);
      await chmod(dest, f.mode & 0o777);
      if (runAs !== undefined) await chown(dest, runAs.uid, runAs.gid);
    } catch (e) {
      if (e instanceof RuntimeError) throw e;
      throw new RuntimeError('files_failed', `cannot place added file ${f.target}: ${(e as Error).message}`, { cause: e });
    }
  }
}
