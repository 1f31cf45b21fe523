/**
 * The NetManager's persisted registration, `<data-dir>/netmanager.json` (0600): the worker
 * identity and broker the NodeEngine gave, the subnet the cluster gave, the local instances and
 * the jobs of interest. A restarted NetManager re-attaches from it at once (the NodeEngine does not
 * have to register again, flows keep running). Written through a temporary file and renamed.
 */
import { chmod, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CoreSnapshot, LocalInstance } from './core.ts';

export interface PersistedState {
  version: 1;
  worker_id: string;
  subnet: string | null;
  subnet_v6: string | null;
  /** the root's extra IPv4 service ranges from the last subnet result (absent in older files) */
  service_ranges?: string[];
  namespace: string;
  bridge: string;
  mqtt: { url: string; username?: string; password?: string; ca?: string };
  instances: LocalInstance[];
  interest: string[];
}

export function statePath(dataDir: string): string {
  return join(dataDir, 'netmanager.json');
}

const str = (v: unknown, max = 65536): v is string => typeof v === 'string' && v.length <= max;

/** the state, or undefined when there is none; a damaged file is reported (and not used) */
export async function readState(dataDir: string, warn: (msg: string) => void): Promise<PersistedState | undefined> {
  const path = statePath(dataDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const s = JSON.parse(text) as Partial<PersistedState>;
    const m = s.mqtt;
    const okInstances = Array.isArray(s.instances) && s.instances.every((i) => str(i?.job_name, 255) && Number.isInteger(i.instance_number) && str(i.nsip, 64) && (i.nsip_v6 === null || str(i.nsip_v6, 64)));
    if (s.version !== 1 || !str(s.worker_id, 200) || !(s.subnet === null || str(s.subnet, 64)) || !(s.subnet_v6 === null || str(s.subnet_v6, 64))
      || !str(s.namespace, 63) || !str(s.bridge, 15) || typeof m !== 'object' || m === null || !str(m.url, 1000) || !okInstances
      || !Array.isArray(s.interest) || !s.interest.every((j) => str(j, 255))
      || !(s.service_ranges === undefined || (Array.isArray(s.service_ranges) && s.service_ranges.length <= 15 && s.service_ranges.every((r) => str(r, 64))))) {
      warn(`${path} is not a NetManager state of this version; starting without it (the NodeEngine registers again)`);
      return undefined;
    }
    return s as PersistedState;
  } catch {
    warn(`${path} is not JSON; starting without it (the NodeEngine registers again)`);
    return undefined;
  }
}

export async function writeState(dataDir: string, s: PersistedState): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = statePath(dataDir);
  const tmp = `${path}.${process.pid}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.chmod(0o600);
    await fh.writeFile(JSON.stringify(s, null, 1));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

export async function removeState(dataDir: string): Promise<void> {
  await rm(statePath(dataDir), { force: true });
}

/** the data dir holds the broker password: 0700 when it is ours */
export async function secureDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  if (st.uid === process.getuid?.() && (st.mode & 0o077) !== 0) await chmod(dir, 0o700);
}

export function snapshotOf(s: PersistedState): CoreSnapshot {
  return { instances: s.instances, interest: s.interest };
}
