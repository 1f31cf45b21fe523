/**
 * The system user that process workloads run as. Looked up through NSS (`getent passwd`), so
 * LDAP/sssd users work too.
 */
import { spawnSync } from 'node:child_process';
import type { RunAs } from '../supervisor/launcher.ts';

export const DEFAULT_RUN_AS = 'oak-workload';

/** The user's uid/gid, or undefined when it does not exist. */
export function lookupUser(name: string): RunAs | undefined {
  if (/^\d+$/.test(name)) {
    const uid = Number(name);
    return { name, uid, gid: uid };
  }
  if (!/^[a-z_][a-z0-9_-]{0,31}\$?$/i.test(name)) return undefined;
  const r = spawnSync('getent', ['passwd', name], { encoding: 'utf8' });
  if (r.status !== 0 || typeof r.stdout !== 'string') return undefined;
  const f = r.stdout.trim().split('\n')[0]?.split(':') ?? [];
  const uid = Number(f[2]);
  const gid = Number(f[3]);
  if (f[0] !== name || !Number.isInteger(uid) || !Number.isInteger(gid)) return undefined;
  return { name, uid, gid };
}

/** the shell command that creates the user (what `make up` and scripts/install-deps.sh run) */
export function createUserHint(name: string): string {
  return `useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ${name}`;
}
