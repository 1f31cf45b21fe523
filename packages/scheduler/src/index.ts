/**
 * @oak/scheduler: placement as pure functions, (demand, candidates) -> placement | reason.
 * Root: pickCluster over cluster aggregates. Cluster: pickWorker over worker reports.
 * Accounting: reserve()/release() and the Ledger (see ledger.ts for the rule).
 */
export type * from './types.ts';
export { demandOf, wholeGpus, compileConstraints, rigidnessOf, describeConstraint, type CompiledConstraints, type GeoRule, type LatencyRule, type SoftRule } from './demand.ts';
export { haversineKm, distanceToAreaKm, estimateRttMs, parseGeoPoint, formatGeoPoint } from './geo.ts';
export { fits, matchesRef, supports, withinGeo, withinLatency, latencyMs, offersAll, peerStatus, workerSatisfies, workerPenalty, EPS, type PeerStatus } from './feasible.ts';
export { workerLoad } from './rank.ts';
export { pickWorker, pickWorkerIndex } from './pick-worker.ts';
export { pickCluster, clusterSatisfies, clusterPenalty, workerHolds } from './pick-cluster.ts';
export { reserve, release, reserveWorker, releaseWorker, reserveCluster, releaseCluster, likelyWorker } from './reserve.ts';
export { Ledger, type Reservation } from './ledger.ts';
export { placeMany, type PlaceManyResult } from './place-many.ts';
export { clusterCandidateOf, rttLookupOf } from './adapt.ts';
export { WorkerPool, defaultLimit, type WorkerPoolOptions, type PoolPickOptions, type PickStats } from './pool.ts';
