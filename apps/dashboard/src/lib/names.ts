/**
 * Names of clusters and workers by id, for the views that show placement (instances carry ids
 * only). One GET /api/clusters/ (anyone logged in may read it) per tab, read again when a view
 * shows an id not known yet (once per id), when a cluster connects, and on a cluster's aggregate
 * while some id shown has no name (at most every 5 s). Dead workers (resources.dead_workers) keep their names too.
 */
import { useEffect } from 'react';
import type { ClusterDoc } from '@oak/contracts';
import { api, session } from './api.ts';
import { useEvents } from './events.ts';
import { store, useStore } from './store.ts';

export interface Names {
  clusters: ReadonlyMap<string, string>;
  workers: ReadonlyMap<string, string>;
}

const EMPTY: Names = { clusters: new Map(), workers: new Map() };
const names = store<Names>(EMPTY);
const MIN_GAP_MS = 5000;
let loading = false;
let lastLoad = 0;
let again: ReturnType<typeof setTimeout> | undefined;
/** ids looked up once already (an id still unknown after that waits for a cluster event) */
const asked = new Set<string>();

function load(): void {
  if (session.get() === null) return;
  const wait = MIN_GAP_MS - (Date.now() - lastLoad);
  if (loading || wait > 0) {
    again ??= setTimeout(
      () => {
        again = undefined;
        load();
      },
      Math.max(wait, 200),
    );
    return;
  }
  loading = true;
  lastLoad = Date.now();
  api
    .get<ClusterDoc[]>('/api/clusters/')
    .then(
      (list) => {
        const clusters = new Map<string, string>();
        const workers = new Map<string, string>();
        for (const c of list) {
          clusters.set(c._id, c.cluster_name);
          for (const w of [...(c.resources?.dead_workers ?? []), ...(c.resources?.worker_summary ?? [])]) workers.set(w.id, w.name);
        }
        names.set({ clusters, workers });
      },
      () => undefined, // names are a nicety: ids are shown meanwhile
    )
    .finally(() => {
      loading = false;
    });
}

session.subscribe(() => {
  if (session.get() !== null) return;
  names.set(EMPTY);
  asked.clear();
  lastLoad = 0;
});

/** The names known now; loads them for the ids given when they are not known yet. */
export function usePlacementNames(ids: readonly { cluster_id: string | null; worker_id: string | null }[]): Names {
  const n = useStore(names);
  const unknown = ids.flatMap((i) => [i.cluster_id !== null && !n.clusters.has(i.cluster_id) ? i.cluster_id : null, i.worker_id !== null && !n.workers.has(i.worker_id) ? i.worker_id : null]).filter((x): x is string => x !== null);
  // a cluster that connects may bring names; an aggregate (updated) only matters while an id shown has none
  useEvents((e) => {
    if (e.type === 'cluster' && (e.action === 'connected' || unknown.length > 0)) load();
  });
  const key = unknown.filter((x) => !asked.has(x)).join(' ');
  useEffect(() => {
    if (key === '') return;
    for (const id of key.split(' ')) asked.add(id);
    load();
  }, [key]);
  return n;
}
