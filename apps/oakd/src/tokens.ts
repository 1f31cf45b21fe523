/**
 * The 1-DOC's own join tokens (docs/security.md): one cluster token bound to its own cluster,
 * one worker token for that cluster, and one spare unbound cluster token for the next cluster
 * someone adds. Tokens are shown once by the API, so oakd keeps the texts it created for itself
 * in `<data dir>/join-tokens.json` (mode 0600) to print the join commands again at each start.
 * A token found revoked, expired, unknown (a new database) or already bound elsewhere is
 * replaced by a new one.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkJoinToken, mintJoinToken, rootTrust, type RootContext } from '@oak/root';
import { writePrivateFile } from '@oak/trust';

export const TOKENS_FILE = 'join-tokens.json';

export interface OwnTokens {
  /** joins this device's cluster to this device's root */
  cluster: string;
  /** joins workers to this device's cluster */
  worker: string;
  /** joins one more cluster (bound to the name of the first that uses it) */
  spareCluster: string;
}

async function readTokens(path: string): Promise<Partial<OwnTokens>> {
  try {
    const data = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    const out: Partial<OwnTokens> = {};
    for (const k of ['cluster', 'worker', 'spareCluster'] as const) if (typeof data[k] === 'string') out[k] = data[k];
    return out;
  } catch {
    return {};
  }
}

export async function ownTokens(ctx: RootContext, dataDir: string, clusterName: string): Promise<OwnTokens> {
  const path = join(dataDir, TOKENS_FILE);
  const stored = await readTokens(path);
  const trust = await rootTrust(ctx);
  const valid = async (text: string | undefined, kind: 'cluster' | 'worker', fits: (name: string | null, cluster: string | null) => boolean): Promise<boolean> => {
    if (text === undefined || !text.endsWith(`.${trust.caHash}`)) return false;
    const c = await checkJoinToken(ctx.store, text, kind);
    return c.ok && fits(c.row.name, c.row.cluster);
  };
  const out: OwnTokens = { cluster: '', worker: '', spareCluster: '' };
  let changed = false;
  if (await valid(stored.cluster, 'cluster', (name) => name === clusterName)) out.cluster = stored.cluster ?? '';
  else {
    out.cluster = (await mintJoinToken(ctx.store, trust, { kind: 'cluster', name: clusterName })).token;
    changed = true;
  }
  if (await valid(stored.worker, 'worker', (_n, cluster) => cluster === clusterName)) out.worker = stored.worker ?? '';
  else {
    out.worker = (await mintJoinToken(ctx.store, trust, { kind: 'worker', cluster: clusterName })).token;
    changed = true;
  }
  if (await valid(stored.spareCluster, 'cluster', (name) => name === null)) out.spareCluster = stored.spareCluster ?? '';
  else {
    out.spareCluster = (await mintJoinToken(ctx.store, trust, { kind: 'cluster' })).token;
    changed = true;
  }
  if (changed) await writePrivateFile(path, `${JSON.stringify(out, null, 2)}\n`);
  return out;
}
