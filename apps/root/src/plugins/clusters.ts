/** Clusters with their aggregate resources (read-only here; clusters register over the link). */
import { Type } from '@sinclair/typebox';
import { NotFoundError, OakError } from '@oak/contracts';
import { requireRole } from '../auth/principal.ts';
import { clusterDoc } from '../docs.ts';
import { overlayFor } from '../overlay.ts';
import { ClusterDocSchema, IdParams, errors } from '../schemas.ts';

const NodeParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 200, description: 'cluster id or name' }),
  nodeId: Type.String({ pattern: '^[^/+#\\s$]{1,200}$', description: 'worker id (oak node ls)' }),
});
const NodeRemovedSchema = Type.Object({ cluster_id: Type.String(), cluster_name: Type.String(), node_id: Type.String(), removed: Type.Boolean() });
import { who, type RootPlugin } from './types.ts';

export const clusterRoutes: RootPlugin = async (app, { ctx }) => {
  const { store } = ctx;

  app.get(
    '/api/clusters/',
    { schema: { tags: ['clusters'], summary: 'every cluster known to the root', response: { 200: Type.Array(ClusterDocSchema), ...errors() } } },
    async (req) => {
      who(req);
      return (await store.listClusters()).map(clusterDoc);
    },
  );

  app.get(
    '/api/clusters/active',
    { schema: { tags: ['clusters'], summary: 'the clusters connected now', response: { 200: Type.Array(ClusterDocSchema), ...errors() } } },
    async (req) => {
      who(req);
      return (await store.listClusters()).filter((c) => c.status === 'ACTIVE').map(clusterDoc);
    },
  );

  app.get(
    '/api/cluster/:id',
    { schema: { tags: ['clusters'], summary: 'one cluster (by id or name) with its resources', params: IdParams, response: { 200: ClusterDocSchema, ...errors(404) } } },
    async (req) => {
      who(req);
      const c = (await store.getCluster(req.params.id)) ?? (await store.listClusters()).find((x) => x.name === req.params.id);
      if (!c) throw new NotFoundError('cluster', req.params.id);
      return clusterDoc(c);
    },
  );

  app.delete(
    '/api/cluster/:id/node/:nodeId',
    {
      schema: {
        tags: ['clusters'],
        summary: "remove a worker: its cluster drops its MQTT credentials and disconnects it at once; its instances are rescheduled",
        params: NodeParams,
        response: { 200: NodeRemovedSchema, ...errors(403, 404, 503) },
      },
    },
    async (req) => {
      requireRole(who(req), 'Infrastructure_Provider');
      const c = (await store.getCluster(req.params.id)) ?? (await store.listClusters()).find((x) => x.name === req.params.id);
      if (!c) throw new NotFoundError('cluster', req.params.id);
      const sent = ctx.removeWorkers?.(c.id, [req.params.nodeId]) ?? false;
      if (!sent) {
        throw new OakError('OAK_UNAVAILABLE', `cluster ${c.name} is not connected, so it cannot be told to remove ${req.params.nodeId}`, {
          hint: 'try again when the cluster is ACTIVE (oak cluster ls); to keep the worker out for good, revoke its token (oak token revoke <id>)',
        });
      }
      // its overlay subnet is free again (only if it is this cluster's worker)
      const released = await overlayFor(store).releaseWorker(c.id, req.params.nodeId);
      req.log.info({ cluster: c.name, node_id: req.params.nodeId, subnet_released: released }, 'worker removed');
      return { cluster_id: c.id, cluster_name: c.name, node_id: req.params.nodeId, removed: true };
    },
  );
};
