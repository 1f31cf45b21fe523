/** Builds scheduler candidates from the documents the root keeps. */
import type { ClusterDoc, WorkerSummary } from '@oak/contracts';
import { parseGeoPoint } from './geo.ts';
import type { ClusterCandidate, RttLookup } from './types.ts';

/**
 * A cluster document as a candidate. A cluster without resources yet (never reported) has no
 * capacity; free-text locations (not `lat,long[,radius]`) give no location.
 */
export function clusterCandidateOf(doc: ClusterDoc, jobs: string[] = [], latency_ms?: Record<string, number>): ClusterCandidate {
  const r = doc.resources;
  const c: ClusterCandidate = {
    id: doc._id,
    name: doc.cluster_name,
    active: doc.status === 'ACTIVE',
    location: parseGeoPoint(doc.cluster_location),
    cpu_cores_free: r?.cpu_cores_free ?? 0,
    memory_free_mb: r?.memory_free_mb ?? 0,
    gpus_free: r?.gpus_free ?? 0,
    virtualizations: r?.virtualizations ?? [],
    workers: r?.worker_summary ?? [],
    jobs,
  };
  if (latency_ms) c.latency_ms = latency_ms;
  if (r?.supported_addons && r.supported_addons.length > 0) c.supported_addons = [...r.supported_addons];
  return c;
}

/**
 * The overlay's measured RTTs as a lookup, from the `net.rtt` lists of worker summaries (each
 * worker's NetManager probes the others, those of other clusters too). Either direction counts;
 * a silent peer (null) is unknown, not far.
 */
export function rttLookupOf(summaries: Iterable<WorkerSummary>): RttLookup {
  const m = new Map<string, number>();
  for (const w of summaries) {
    for (const p of w.net?.rtt ?? []) if (typeof p.rtt_ms === 'number' && Number.isFinite(p.rtt_ms)) m.set(`${w.id}\u0000${p.worker_id}`, p.rtt_ms);
  }
  return (a, b) => m.get(`${a}\u0000${b}`) ?? m.get(`${b}\u0000${a}`);
}
