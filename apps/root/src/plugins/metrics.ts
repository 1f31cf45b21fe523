/**
 * GET /metrics (Prometheus text format, no auth): HTTP requests by route and status, request
 * durations, instances by status and active clusters (computed on scrape), process metrics.
 * Each app has its own registry, so several roots in one process (tests, oakd) do not collide.
 *
 * Idle cost: the request counter and the duration histogram are kept here (a Map each) from the
 * start; `prom-client` (its registry, the gauges and the Node.js process metrics) is loaded at the
 * first scrape only. Its event-loop lag monitor samples every 100 ms, not every 10 ms (the
 * default woke an idle root 100 times a second: about 1% of a core).
 */
import type { Registry } from 'prom-client';
import { INSTANCE_STATES } from '@oak/contracts';
import type { RootContext } from '../context.ts';
import type { RootPlugin } from './types.ts';

const BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** the lag monitor's sampling interval (prom-client's default is 10 ms) */
export const EVENT_LOOP_PRECISION_MS = 100;

/** a label value in the text format: backslash, double quote and newline escaped */
function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** The request counter and the duration histogram, in the exposition format of prom-client. */
export class HttpMetrics {
  readonly #requests = new Map<string, { method: string; route: string; status: string; n: number }>();
  readonly #durations = new Map<string, { method: string; route: string; buckets: number[]; sum: number; count: number }>();

  observe(method: string, route: string, status: string, seconds: number): void {
    const rk = `${method} ${route} ${status}`;
    const r = this.#requests.get(rk);
    if (r) r.n++;
    else this.#requests.set(rk, { method, route, status, n: 1 });
    const dk = `${method} ${route}`;
    let d = this.#durations.get(dk);
    if (!d) {
      d = { method, route, buckets: BUCKETS.map(() => 0), sum: 0, count: 0 };
      this.#durations.set(dk, d);
    }
    // the first bucket it fits in (text() sums them up); above the last one: only in +Inf (count)
    const i = BUCKETS.findIndex((le) => seconds <= le);
    if (i >= 0) d.buckets[i] = (d.buckets[i] as number) + 1;
    d.sum += seconds;
    d.count++;
  }

  text(): string {
    const out = ['# HELP oak_http_requests_total HTTP requests answered, by method, route and status', '# TYPE oak_http_requests_total counter'];
    for (const r of this.#requests.values()) out.push(`oak_http_requests_total{method="${esc(r.method)}",route="${esc(r.route)}",status="${esc(r.status)}"} ${r.n}`);
    out.push('', '# HELP oak_http_request_duration_seconds HTTP request duration, by method and route', '# TYPE oak_http_request_duration_seconds histogram');
    for (const d of this.#durations.values()) {
      const labels = `method="${esc(d.method)}",route="${esc(d.route)}"`;
      let acc = 0;
      BUCKETS.forEach((le, i) => {
        acc += d.buckets[i] as number;
        out.push(`oak_http_request_duration_seconds_bucket{le="${le}",${labels}} ${acc}`);
      });
      out.push(`oak_http_request_duration_seconds_bucket{le="+Inf",${labels}} ${d.count}`);
      out.push(`oak_http_request_duration_seconds_sum{${labels}} ${d.sum}`);
      out.push(`oak_http_request_duration_seconds_count{${labels}} ${d.count}`);
    }
    return `${out.join('\n')}\n`;
  }
}

/** prom-client's registry with the gauges and the process metrics: made at the first scrape */
async function makeRegistry(ctx: RootContext): Promise<Registry> {
  const { Gauge, Registry: PromRegistry, collectDefaultMetrics } = await import('prom-client');
  const registry = new PromRegistry();
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_PRECISION_MS });
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

  return registry;
}

export const metricsPlugin: RootPlugin = async (app, { ctx }) => {
  const http = new HttpMetrics();
  let registry: Promise<Registry> | undefined;

  app.addHook('onResponse', async (req, reply) => {
    http.observe(req.method, req.routeOptions.url ?? 'unmatched', String(reply.statusCode), reply.elapsedTime / 1000);
  });

  app.get('/metrics', { schema: { tags: ['operations'], summary: 'Prometheus metrics (no auth)' } }, async (_req, reply) => {
    const reg = await (registry ??= makeRegistry(ctx).catch((err: unknown) => {
      registry = undefined;
      throw err;
    }));
    const body = `${http.text()}\n${await reg.metrics()}`;
    return reply.type(reg.contentType).send(body);
  });
};
// like fastify-plugin: the onResponse hook must see every route, not only this plugin's
(metricsPlugin as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;
