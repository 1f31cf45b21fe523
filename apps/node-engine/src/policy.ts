/**
 * What a worker lets an instance have beyond the defaults: `privileged: true` only with
 * --allow-privileged (the root already refused it for non-Admins), host-path `volumes` only under
 * the --volume-allow directories (containers bind-mount them, microVMs share them over virtiofs).
 * A refusal is the instance's FAILED status_detail.
 *
 * `volumes` entries (parsed by @oak/contracts' parseVolumeSpecs): `"<host path>:<container path>[:ro|rw]"`,
 * `{ source | host_path, target | mount_path, read_only }` (host paths), `{ name, target }` (named
 * volumes: `<dataDir>/volumes/<organisation>/<name>`, kept across restarts and redeploys) and
 * Oakestra's `{ volume_id, csi_driver, mount_path }` (accepted, nothing mounted).
 */
import { mkdir, realpath, stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { VOLUME_NAME_PATTERN, parseVolumeSpecs } from '@oak/contracts';

export interface Mount {
  source: string;
  target: string;
  readonly: boolean;
}

export interface NamedVolume {
  name: string;
  target: string;
  readonly: boolean;
}

export type VolumeParse = { ok: true; mounts: Mount[]; named: NamedVolume[]; ignored: number } | { ok: false; reason: string };

/** Pure: the SLA's `volumes` as host bind mounts and named volumes (csi ones are counted, not mounted), or why not. */
export function parseVolumes(volumes: unknown): VolumeParse {
  const p = parseVolumeSpecs(volumes, 'volumes');
  const first = p.errors[0];
  if (first !== undefined) return { ok: false, reason: `${first.path}: ${first.message}` };
  const mounts: Mount[] = [];
  const named: NamedVolume[] = [];
  let ignored = 0;
  for (const v of p.items) {
    if (v.kind === 'host') mounts.push({ source: v.source, target: v.target, readonly: v.readonly });
    else if (v.kind === 'named') named.push({ name: v.name, target: v.target, readonly: v.readonly });
    else ignored++;
  }
  return { ok: true, mounts, named, ignored };
}

/** The directory of a named volume: `<volumesDir>/<organisation>/<name>`, made when missing. */
export async function namedVolumeDir(volumesDir: string, org: string, name: string): Promise<string> {
  if (!ORG_RE.test(org) || org.includes('..') || !VOLUME_NAME_PATTERN.test(name) || name.includes('..')) {
    throw new Error(`invalid volume owner or name ${JSON.stringify(`${org}/${name}`)}`);
  }
  const dir = join(volumesDir, org, name);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  return dir;
}

const ORG_RE = /^[A-Za-z0-9_.-]{1,128}$/;

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
  /** where named volumes live (`<dataDir>/volumes`) */
  volumesDir?: string | undefined;
}

/** The extras an instance may have on this worker (privileged, mounts), or why it must FAIL. */
export async function applyPolicy(
  cmd: { privileged?: boolean | undefined; volumes?: unknown; virtualization: string; organization_id?: string | undefined },
  policy: Policy,
): Promise<{ ok: true; privileged: boolean; mounts: Mount[]; ignored: number } | { ok: false; reason: string }> {
  if (cmd.privileged === true && !policy.allowPrivileged) {
    return { ok: false, reason: 'privileged: true refused: this worker does not allow privileged instances (start the NodeEngine with --allow-privileged)' };
  }
  const parsed = parseVolumes(cmd.volumes);
  if (!parsed.ok) return parsed;
  if (parsed.mounts.length + parsed.named.length > 0 && cmd.virtualization !== 'container' && cmd.virtualization !== 'microvm') {
    return { ok: false, reason: `volumes are supported for containers and microVMs only (this is a ${cmd.virtualization} instance)` };
  }
  const checked = await checkMounts(parsed.mounts, policy.volumeAllow);
  if (!checked.ok) return checked;
  const mounts = [...checked.mounts];
  if (parsed.named.length > 0) {
    if (policy.volumesDir === undefined) return { ok: false, reason: 'named volumes are not available on this worker (no data directory)' };
    const org = cmd.organization_id ?? 'default';
    for (const n of parsed.named) {
      try {
        mounts.push({ source: await namedVolumeDir(policy.volumesDir, org, n.name), target: n.target, readonly: n.readonly });
      } catch (e) {
        return { ok: false, reason: `named volume ${n.name}: ${(e as Error).message}` };
      }
    }
  }
  return { ok: true, privileged: cmd.privileged === true, mounts, ignored: parsed.ignored };
}
