/**
 * GET /metrics (Prometheus text format, no auth): HTTP requests by route and status, request
 * durations, instances by status and active clusters (computed on scrape), process metrics.
 * Each app has its own registry, so several roots in one process (tests, oakd) do not collide.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { INSTANCE_STATES } from '@oak/contracts';
import type { RootPlugin } from './types.ts';

export const metricsPlugin: RootPlugin = async (app, { ctx }) => {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const requests = new Counter({
    name: 'oak_http_requests_total',
    help: 'HTTP requests answered, by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'oak_http_request_duration_seconds',
    help: 'HTTP request duration, by method and route',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  new Gauge({
    name: 'oak_instances',
    help: 'service instances by status',
    labelNames: ['status'] as const,
    registers: [registry],
    async collect() {
      const counts = new Map<string, number>(INSTANCE_STATES.map((s) => [s, 0]));
      for (const i of await ctx.store.listInstances()) counts.set(i.status, (counts.get(i.status) ?? 0) + 1);
      for (const [status, n] of counts) this.set({ status }, n);
    },
  });
  new Gauge({
    name: 'oak_clusters_active',
    help: 'clusters connected to this root',
    registers: [registry],
    async collect() {
      this.set((await ctx.store.listClusters()).filter((c) => c.status === 'ACTIVE').length);
    },
  });
  new Gauge({
    name: 'oak_sse_subscribers',
    help: 'open event streams (GET /api/events) and other event listeners',
    registers: [registry],
    collect() {
      this.set(ctx.events.size);
    },
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    requests.inc({ method: req.method, route, status: String(reply.statusCode) });
    duration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
  });

  app.get('/metrics', { schema: { tags: ['operations'], summary: 'Prometheus metrics (no auth)' } }, async (_req, reply) => {
    const body = await registry.metrics();
    return reply.type(registry.contentType).send(body);
  });
};
// like fastify-plugin: the onResponse hook must see every route, not only this plugin's
(metricsPlugin as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;
