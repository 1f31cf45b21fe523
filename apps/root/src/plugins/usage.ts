/**
 * Per-instance CPU and memory readings (issue 11), from the root's in-memory UsageBook (usage.ts):
 * the last readings of each instance, oldest first, lost when the root restarts. Live readings
 * come on GET /api/events?types=metrics. Same access as the instances themselves: the app roles,
 * the service's organisation (Admins: any).
 */
import { Type } from '@sinclair/typebox';
import { loadInstance, loadService } from '../ops.ts';
import { listed } from '../docs.ts';
import { IdParams, InstanceParams, errors } from '../schemas.ts';
import { who, type RootPlugin } from './types.ts';

const Sample = Type.Object({
  at: Type.Number({ description: 'ms since the epoch, when the root received the reading' }),
  cpu_percent: Type.Number({ description: 'percent of one core' }),
  memory_mb: Type.Number(),
});
const InstanceUsageDoc = Type.Object({
  microserviceID: Type.String(),
  instance_number: Type.Integer(),
  samples: Type.Array(Sample),
});
const ServiceUsageDoc = Type.Object({
  microserviceID: Type.String(),
  job_name: Type.String(),
  /** how many readings each instance keeps at most */
  max_samples: Type.Integer(),
  instances: Type.Array(Type.Object({ instance_number: Type.Integer(), samples: Type.Array(Sample) })),
});

export const usageRoutes: RootPlugin = async (app, { ctx }) => {
  app.get(
    '/api/service/:id/metrics',
    {
      schema: {
        tags: ['instances'],
        summary: "the recent CPU and memory readings of a service's instances (kept in the root's memory, lost on restart)",
        params: IdParams,
        response: { 200: ServiceUsageDoc, ...errors(403, 404) },
      },
    },
    async (req) => {
      const { service } = await loadService(ctx, who(req), req.params.id);
      const book = ctx.usage;
      const rows = listed(await ctx.store.listInstances({ service_id: service.id })).sort((a, b) => a.instance_number - b.instance_number);
      return {
        microserviceID: service.id,
        job_name: service.job_name,
        max_samples: book?.maxSamples ?? 0,
        instances: rows.map((r) => ({ instance_number: r.instance_number, samples: book?.history(service.id, r.instance_number) ?? [] })),
      };
    },
  );

  app.get(
    '/api/service/:id/instance/:n/metrics',
    {
      schema: {
        tags: ['instances'],
        summary: 'the recent CPU and memory readings of one instance (kept in the root\'s memory, lost on restart)',
        params: InstanceParams,
        response: { 200: InstanceUsageDoc, ...errors(400, 403, 404) },
      },
    },
    async (req) => {
      const { service, instance } = await loadInstance(ctx, who(req), req.params.id, req.params.n);
      return { microserviceID: service.id, instance_number: instance.instance_number, samples: ctx.usage?.history(service.id, instance.instance_number) ?? [] };
    },
  );
};
