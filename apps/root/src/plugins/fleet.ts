/**
 * Fleet upgrades (issue 14, docs/api.md#fleet-upgrades): an Admin uploads a NodeEngine release
 * artifact (size-capped, checked, its sha256 computed and kept with it), then starts a rollout that
 * the fleet shell (fleet/shell.ts) carries out batch by batch. Versions of every component.
 */
import { Type } from '@sinclair/typebox';
import { MAX_ARTIFACT_BYTES, NotFoundError, OakError, type ArtifactDoc, type RolloutDoc } from '@oak/contracts';
import type { FleetArtifactRow } from '@oak/store';
import { releaseVersion } from '@oak/sysinfo';
import { requireRole } from '../auth/principal.ts';
import { inspectArtifact } from '../fleet/artifact.ts';
import { NothingToUpgradeError } from '../fleet/core.ts';
import { createRollout, knownWorkers } from '../fleet/shell.ts';
import { errors } from '../schemas.ts';
import { who, type RootPlugin } from './types.ts';

/** this root's version */
export const ROOT_VERSION = releaseVersion('0.1.0');

const Doc = Type.Object({}, { additionalProperties: true });
const ShaParams = Type.Object({ sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }) });
const RolloutParams = Type.Object({ id: Type.String({ pattern: '^[a-z0-9]{1,40}$' }) });
const RolloutBody = Type.Object(
  {
    artifact: Type.String({ pattern: '^[0-9a-f]{64}$', description: 'the sha256 of an uploaded artifact' }),
    cluster: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'only the workers of this cluster (name or id)' })),
    batch: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'workers upgraded at once (default 1)' })),
    health_timeout_s: Type.Optional(Type.Integer({ minimum: 5, maximum: 3600, description: 'how long a worker has to come back healthy (default 120)' })),
  },
  { additionalProperties: false },
);

const artifactDoc = (r: FleetArtifactRow): ArtifactDoc => ({ ...r });

export const fleetRoutes: RootPlugin = async (app, { ctx }) => {
  const { store } = ctx;
  const limit = (): number => ctx.fleetArtifactLimit ?? MAX_ARTIFACT_BYTES;
  const tooLarge = (): OakError => new OakError('OAK_BODY_TOO_LARGE', `the artifact is larger than ${limit()} bytes`, { hint: 'a NodeEngine artifact is about 10 MB; check that this is oak-node-engine-<version>-linux-<arch>.tar.gz' });
  // the artifact's bytes as they come (nothing else of the API takes a non-JSON body)
  app.addContentTypeParser(['application/gzip', 'application/octet-stream'], { parseAs: 'buffer', bodyLimit: MAX_ARTIFACT_BYTES }, (_req, body, done) => done(null, body));
  const admin = async (req: Parameters<typeof who>[0]): Promise<void> => requireRole(who(req), 'Admin');
  const infra = async (req: Parameters<typeof who>[0]): Promise<void> => requireRole(who(req), 'Infrastructure_Provider');

  app.post(
    '/api/fleet/artifacts',
    {
      bodyLimit: MAX_ARTIFACT_BYTES,
      // the role and the announced size are checked before a byte of the body is read
      onRequest: async (req) => {
        await admin(req);
        if (Number(req.headers['content-length'] ?? 0) > limit()) throw tooLarge();
      },
      schema: { tags: ['fleet'], summary: 'upload a NodeEngine release artifact (Admin; application/gzip, at most 256 MiB)', response: { 200: Doc, 201: Doc, ...errors(403, 413, 415, 422) } },
    },
    async (req, reply) => {
      const body = req.body;
      if (!Buffer.isBuffer(body) || body.length === 0) {
        throw new OakError('OAK_UNSUPPORTED_MEDIA_TYPE', 'send the artifact as the body with content-type application/gzip', { hint: 'oak fleet upgrade --artifact <file> does this' });
      }
      if (body.length > limit()) throw tooLarge();
      const info = inspectArtifact(body);
      const row: FleetArtifactRow = { ...info, uploaded_at: new Date().toISOString(), uploaded_by: who(req).user.id };
      const added = await store.putFleetArtifact(row, body);
      req.log.info({ sha256: info.sha256, version: info.version, arch: info.arch, size: info.size, added }, 'fleet: artifact uploaded');
      const kept = (await store.getFleetArtifact(info.sha256)) ?? row;
      return reply.code(added ? 201 : 200).send(artifactDoc(kept));
    },
  );

  app.get('/api/fleet/artifacts', { onRequest: infra, schema: { tags: ['fleet'], summary: 'the uploaded artifacts', response: { 200: Type.Array(Doc), ...errors(403) } } }, async () =>
    (await store.listFleetArtifacts()).map(artifactDoc),
  );

  app.delete('/api/fleet/artifacts/:sha256', { onRequest: admin, schema: { tags: ['fleet'], params: ShaParams, summary: 'remove an artifact (Admin)', response: { 200: Doc, ...errors(403, 404) } } }, async (req) => {
    if (!(await store.deleteFleetArtifact(req.params.sha256))) throw new NotFoundError('artifact', req.params.sha256);
    return { sha256: req.params.sha256, removed: true };
  });

  app.post(
    '/api/fleet/rollouts',
    { onRequest: admin, schema: { tags: ['fleet'], summary: 'upgrade the workers to an uploaded artifact, a batch at a time (Admin)', body: RolloutBody, response: { 201: Doc, ...errors(403, 404, 409, 422, 503) } } },
    async (req, reply) => {
      if (!ctx.fleet) throw new OakError('OAK_UNAVAILABLE', 'this root runs no cluster link, so it cannot reach any worker', { hint: 'start a rollout on the root the clusters connect to' });
      if (!(await store.getFleetArtifact(req.body.artifact))) throw new NotFoundError('artifact', req.body.artifact, 'upload it first: POST /api/fleet/artifacts (oak fleet upgrade --artifact <file>)');
      const running = (await store.listFleetRollouts(100)).find((r) => r.status === 'running');
      if (running) throw new OakError('OAK_CONFLICT', `rollout ${running.id} is still running`, { hint: `wait for it: oak fleet status ${running.id}` });
      let r: RolloutDoc;
      try {
        r = await createRollout(store, ctx.fleet.link, {
          artifactSha: req.body.artifact, cluster: req.body.cluster ?? null, batch: req.body.batch ?? 1, healthTimeoutS: req.body.health_timeout_s ?? 120, by: who(req).user.id,
        });
      } catch (err) {
        if (err instanceof NothingToUpgradeError) throw new OakError('OAK_VALIDATION', err.message, { hint: 'oak node ls shows the workers and their versions' });
        throw err;
      }
      req.log.info({ rollout: r.id, version: r.artifact.version, workers: r.workers.length, batches: r.batches }, 'fleet: rollout started');
      void ctx.fleet.tick();
      return reply.code(201).send(r);
    },
  );

  app.get('/api/fleet/rollouts', { onRequest: infra, schema: { tags: ['fleet'], summary: 'the last 100 rollouts, newest first', response: { 200: Type.Array(Doc), ...errors(403) } } }, async () =>
    (await store.listFleetRollouts(100)).map((r) => JSON.parse(r.state) as RolloutDoc),
  );

  app.get('/api/fleet/rollouts/:id', { onRequest: infra, schema: { tags: ['fleet'], params: RolloutParams, summary: 'one rollout: its batches, each worker, the outcome', response: { 200: Doc, ...errors(403, 404) } } }, async (req) => {
    const r = await store.getFleetRollout(req.params.id);
    if (!r) throw new NotFoundError('rollout', req.params.id);
    return JSON.parse(r.state) as RolloutDoc;
  });

  app.get('/api/fleet/versions', { schema: { tags: ['fleet'], summary: 'the version of the root, of each cluster orchestrator, NodeEngine and NetManager', response: { 200: Doc, ...errors() } } }, async (req) => {
    who(req);
    const clusters = (await store.listClusters()).map((c) => ({ id: c.id, name: c.name, status: c.status, version: c.resources?.version ?? null }));
    const workers = (await knownWorkers(store, ctx.fleet?.link)).map((k) => ({
      id: k.w.id, name: k.w.name, cluster_id: k.cluster_id, cluster_name: k.cluster_name, version: k.w.version ?? null, netmanager_version: k.w.netmanager_version ?? null,
      self_upgrade_blocker: k.w.self_upgrade_blocker ?? null, upgrade: k.w.upgrade ?? null,
    }));
    return { root: ROOT_VERSION, clusters, workers };
  });
};
