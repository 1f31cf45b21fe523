/** Builds scheduler candidates from the documents the root keeps. */
import type { ClusterDoc } from '@oak/contracts';
import { parseGeoPoint } from './geo.ts';
import type { ClusterCandidate } from './types.ts';

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
  return c;
}
