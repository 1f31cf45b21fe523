/** Clusters with their aggregate resources (read-only here; clusters register over the link). */
import { Type } from '@sinclair/typebox';
import { NotFoundError } from '@oak/contracts';
import { clusterDoc } from '../docs.ts';
import { ClusterDocSchema, IdParams, errors } from '../schemas.ts';
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
};
