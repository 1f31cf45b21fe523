/**
 * Fleet upgrades, the shell (issue 14): every second, each running rollout in the store takes one
 * step of the pure core (core.ts) over what the root sees of its workers; a changed state is
 * written to the store first, and only then are the commands sent over the link. A restarted root
 * (or the next leader on PostgreSQL) finds the running rollouts in the store and goes on from the
 * persisted state: commands in flight are resent while their workers say nothing about them, and
 * the health deadlines count from the persisted send times.
 *
 * Also serves the clusters' artifact_request (chunks of an artifact from the store).
 */
import { randomBytes } from 'node:crypto';
import { ARTIFACT_CHUNK_BYTES, type ClusterToRoot, type RolloutDoc, type RootToCluster, type WorkerSummary } from '@oak/contracts';
import type { Store } from '@oak/store';
import { NothingToUpgradeError, planRollout, stepRollout, type Candidate, type WorkerObservation } from './core.ts';

export interface FleetLink {
  isConnected(clusterId: string): boolean;
  send(clusterId: string, msg: RootToCluster): boolean;
}

export interface FleetLog {
  info(o: object, m: string): void;
  warn(o: object, m: string): void;
  error(o: object, m: string): void;
}

export interface FleetShell {
  /** one pass over the running rollouts now (tests; the timer calls it too) */
  tick(): Promise<void>;
  close(): void;
}

/** the workers the root knows, with their cluster (from the clusters' last aggregates) */
export async function knownWorkers(store: Store, link: FleetLink | undefined): Promise<{ cluster_id: string; cluster_name: string; connected: boolean; w: WorkerSummary }[]> {
  const out: { cluster_id: string; cluster_name: string; connected: boolean; w: WorkerSummary }[] = [];
  for (const c of await store.listClusters()) {
    const connected = c.status === 'ACTIVE' && (link?.isConnected(c.id) ?? true);
    for (const w of c.resources?.worker_summary ?? []) out.push({ cluster_id: c.id, cluster_name: c.name, connected, w });
  }
  return out;
}

async function observer(store: Store, link: FleetLink): Promise<(id: string) => WorkerObservation | undefined> {
  const workers = new Map((await knownWorkers(store, link)).map((k) => [k.w.id, k]));
  const running = new Map<string, string[]>();
  for (const i of await store.listInstances({ statuses: ['RUNNING'] })) {
    if (i.worker_id === null) continue;
    const l = running.get(i.worker_id) ?? [];
    l.push(`${i.service_id}#${i.instance_number}`);
    running.set(i.worker_id, l);
  }
  return (id) => {
    const k = workers.get(id);
    if (!k) return undefined;
    return {
      connected: k.connected, version: k.w.version, conn: k.w.conn, reported_at: k.w.reported_at, upgrade: k.w.upgrade,
      self_upgrade_blocker: k.w.self_upgrade_blocker, running: running.get(id) ?? [],
    };
  };
}

export interface StartInput {
  artifactSha: string;
  cluster: string | null;
  batch: number;
  healthTimeoutS: number;
  by: string | null;
}

/** Plans a rollout over the connected workers (of one cluster) and persists it; the shell runs it. */
export async function createRollout(store: Store, link: FleetLink | undefined, input: StartInput, now = Date.now()): Promise<RolloutDoc> {
  const art = await store.getFleetArtifact(input.artifactSha);
  if (!art) throw new NothingToUpgradeError(`artifact ${input.artifactSha} is not uploaded`);
  const candidates: Candidate[] = (await knownWorkers(store, link))
    .filter((k) => k.connected && (input.cluster === null || k.cluster_name === input.cluster || k.cluster_id === input.cluster))
    .map((k) => ({ id: k.w.id, name: k.w.name, cluster_id: k.cluster_id, cluster_name: k.cluster_name, version: k.w.version ?? 'unknown', arch: k.w.arch }));
  const r = planRollout({
    id: randomBytes(6).toString('hex'), artifact: { sha256: art.sha256, version: art.version, arch: art.arch, size: art.size }, candidates, cluster: input.cluster,
    batch_size: input.batch, health_timeout_s: input.healthTimeoutS, now, by: input.by,
  });
  await store.putFleetRollout(r.id, r.status, JSON.stringify(r), r.created_at);
  return r;
}

export function startFleetShell(o: { store: Store; link: FleetLink; log: FleetLog; intervalMs?: number; resendMs?: number }): FleetShell {
  let busy: Promise<void> | undefined;
  let closed = false;
  const pass = async (): Promise<void> => {
    const running = (await o.store.listFleetRollouts(100)).filter((r) => r.status === 'running');
    if (running.length === 0) return;
    const observe = await observer(o.store, o.link);
    for (const row of running) {
      const before = JSON.parse(row.state) as RolloutDoc;
      const step = stepRollout(before, observe, Date.now(), o.resendMs !== undefined ? { resendMs: o.resendMs } : {});
      if (!step.changed) continue;
      // persisted before it is acted on: a root that stops here resends from this state
      await o.store.putFleetRollout(step.rollout.id, step.rollout.status, JSON.stringify(step.rollout), step.rollout.created_at);
      for (const e of step.effects) {
        const sent = o.link.send(e.cluster_id, { type: 'worker_upgrade', worker_id: e.worker_id, command: e.command });
        o.log.info({ rollout: step.rollout.id, worker: e.worker_id, action: e.command.action, version: e.command.version, sent }, 'fleet: command');
      }
      if (step.rollout.status !== 'running') o.log.info({ rollout: step.rollout.id, status: step.rollout.status, outcome: step.rollout.outcome }, 'fleet: rollout ended');
    }
  };
  const tick = (): Promise<void> => {
    busy ??= pass()
      .catch((err: unknown) => o.log.error({ err }, 'fleet: step failed'))
      .finally(() => {
        busy = undefined;
      });
    return busy;
  };
  const timer = setInterval(() => {
    if (!closed) void tick();
  }, o.intervalMs ?? 1000);
  timer.unref();
  return {
    tick,
    close() {
      closed = true;
      clearInterval(timer);
    },
  };
}

/** The answer to a cluster's artifact_request: one chunk from the store. */
export async function artifactChunk(store: Store, msg: Extract<ClusterToRoot, { type: 'artifact_request' }>): Promise<RootToCluster> {
  const base = { type: 'artifact_chunk' as const, request_id: msg.request_id, sha256: msg.sha256, offset: msg.offset };
  const art = await store.getFleetArtifact(msg.sha256);
  if (!art) return { ...base, total: 0, data: '', error: 'no such artifact at the root' };
  if (msg.offset > art.size) return { ...base, total: art.size, data: '', error: 'offset past the end' };
  const data = (await store.readFleetArtifact(msg.sha256, msg.offset, ARTIFACT_CHUNK_BYTES)) ?? Buffer.alloc(0);
  return { ...base, total: art.size, data: data.toString('base64') };
}
