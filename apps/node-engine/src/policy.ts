/**
 * What a worker lets an instance have beyond the defaults: `privileged: true` only with
 * --allow-privileged (the root already refused it for non-Admins), host-path `volumes` only under
 * the --volume-allow directories. A refusal is the instance's FAILED status_detail.
 *
 * `volumes` entries: `"<host path>:<container path>[:ro|rw]"`, or an object
 * `{ source | host_path, target | mount_path | container_path, read_only | readonly }`.
 */
import { realpath, stat } from 'node:fs/promises';
import { isAbsolute, sep } from 'node:path';

export interface Mount {
  source: string;
  target: string;
  readonly: boolean;
}

export type VolumeParse = { ok: true; mounts: Mount[] } | { ok: false; reason: string };

const MAX_VOLUMES = 32;

function absClean(p: string): boolean {
  return isAbsolute(p) && p.length <= 4096 && !p.split('/').includes('..') && !p.includes('\0');
}

/** Pure: the SLA's `volumes` as bind mounts, or why not. */
export function parseVolumes(volumes: unknown): VolumeParse {
  if (volumes === undefined || volumes === null) return { ok: true, mounts: [] };
  if (!Array.isArray(volumes)) return { ok: false, reason: 'volumes must be a list' };
  if (volumes.length > MAX_VOLUMES) return { ok: false, reason: `at most ${MAX_VOLUMES} volumes` };
  const mounts: Mount[] = [];
  for (const [i, v] of volumes.entries()) {
    let source: unknown;
    let target: unknown;
    let ro: unknown = false;
    if (typeof v === 'string') {
      const parts = v.split(':');
      if (parts.length < 2 || parts.length > 3 || (parts[2] !== undefined && parts[2] !== 'ro' && parts[2] !== 'rw')) {
        return { ok: false, reason: `volumes[${i}] ${JSON.stringify(v.slice(0, 200))}: write "<host path>:<container path>[:ro]"` };
      }
      [source, target] = parts;
      ro = parts[2] === 'ro';
    } else if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      source = o['source'] ?? o['host_path'];
      target = o['target'] ?? o['mount_path'] ?? o['container_path'];
      ro = o['read_only'] ?? o['readonly'] ?? false;
      if (source === undefined) return { ok: false, reason: `volumes[${i}]: only host-path volumes are supported here (give "source", a directory on the worker)` };
    } else {
      return { ok: false, reason: `volumes[${i}] is neither "<host>:<container>" nor an object` };
    }
    if (typeof source !== 'string' || !absClean(source)) return { ok: false, reason: `volumes[${i}]: the host path must be an absolute path without ".."` };
    if (typeof target !== 'string' || !absClean(target) || target === '/') return { ok: false, reason: `volumes[${i}]: the container path must be an absolute path without ".." (not "/")` };
    if (typeof ro !== 'boolean') return { ok: false, reason: `volumes[${i}]: read_only must be true or false` };
    mounts.push({ source, target, readonly: ro });
  }
  return { ok: true, mounts };
}

function under(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/**
 * Resolves each source (symlinks included) and checks it against the allow-list (also resolved);
 * answers the mounts with resolved sources, or the reason.
 */
export async function checkMounts(mounts: readonly Mount[], allow: readonly string[]): Promise<{ ok: true; mounts: Mount[] } | { ok: false; reason: string }> {
  if (mounts.length === 0) return { ok: true, mounts: [] };
  if (allow.length === 0) return { ok: false, reason: 'host-path volumes are refused: this worker allows none (start it with --volume-allow <dir,...>)' };
  const allowed: string[] = [];
  for (const a of allow) {
    try {
      allowed.push(await realpath(a));
    } catch {
      /* an allowed directory that does not exist allows nothing */
    }
  }
  const out: Mount[] = [];
  for (const m of mounts) {
    let real: string;
    try {
      real = await realpath(m.source);
      await stat(real);
    } catch {
      return { ok: false, reason: `volume source ${m.source} does not exist on this worker` };
    }
    if (!allowed.some((d) => under(real, d))) {
      return { ok: false, reason: `volume source ${m.source}${real !== m.source ? ` (${real})` : ''} is outside this worker's allowed directories (${allow.join(', ')})` };
    }
    out.push({ ...m, source: real });
  }
  return { ok: true, mounts: out };
}

export interface Policy {
  allowPrivileged: boolean;
  volumeAllow: readonly string[];
}

/** The extras an instance may have on this worker (privileged, mounts), or why it must FAIL. */
export async function applyPolicy(
  cmd: { privileged?: boolean | undefined; volumes?: unknown; virtualization: string },
  policy: Policy,
): Promise<{ ok: true; privileged: boolean; mounts: Mount[] } | { ok: false; reason: string }> {
  if (cmd.privileged === true && !policy.allowPrivileged) {
    return { ok: false, reason: 'privileged: true refused: this worker does not allow privileged instances (start the NodeEngine with --allow-privileged)' };
  }
  const parsed = parseVolumes(cmd.volumes);
  if (!parsed.ok) return parsed;
  if (parsed.mounts.length > 0 && cmd.virtualization !== 'container') {
    return { ok: false, reason: `volumes are supported for containers only (this is a ${cmd.virtualization} instance)` };
  }
  const checked = await checkMounts(parsed.mounts, policy.volumeAllow);
  if (!checked.ok) return checked;
  return { ok: true, privileged: cmd.privileged === true, mounts: checked.mounts };
}
