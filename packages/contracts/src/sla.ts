/**
 * SLA v2.0 deployment descriptor (SPEC §2). The TypeBox schemas here are the one source for the
 * TypeScript types, runtime validation (see validate.ts) and the OpenAPI document.
 */
import { Type, type Static } from '@sinclair/typebox';

export const NAME_PATTERN = '^[a-zA-Z0-9]{1,30}$';
export const VIRTUALIZATIONS = ['container', 'unikernel', 'microvm', 'process', 'wasm'] as const;
export type Virtualization = (typeof VIRTUALIZATIONS)[number];
/** Schema of one virtualization name. */
export const Virtualization = Type.Union(VIRTUALIZATIONS.map((v) => Type.Literal(v)));

const Name = (description: string) => Type.String({ pattern: NAME_PATTERN, description });
const NonNeg = (description: string) => Type.Number({ minimum: 0, description });

export const DirectConstraint = Type.Object(
  {
    type: Type.Literal('direct'),
    cluster: Type.Optional(Type.String({ minLength: 1 })),
    node: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: true },
);
export const GeoConstraint = Type.Object(
  {
    type: Type.Literal('geo'),
    location: Type.String({ description: '"lat,long"' }),
    threshold: NonNeg('kilometres'),
  },
  { additionalProperties: true },
);
export const LatencyConstraint = Type.Object(
  {
    type: Type.Literal('latency'),
    area: Type.Optional(Type.String()),
    location: Type.Optional(Type.String()),
    threshold: NonNeg('milliseconds'),
  },
  { additionalProperties: true },
);
export const Constraint = Type.Union([DirectConstraint, GeoConstraint, LatencyConstraint]);
export type Constraint = Static<typeof Constraint>;
export type DirectConstraint = Static<typeof DirectConstraint>;
export type GeoConstraint = Static<typeof GeoConstraint>;
export type LatencyConstraint = Static<typeof LatencyConstraint>;

export const HealthProbe = Type.Object(
  {
    type: Type.Union([Type.Literal('tcp'), Type.Literal('http'), Type.Literal('exec')]),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    path: Type.Optional(Type.String()),
    command: Type.Optional(Type.Array(Type.String())),
    interval_s: Type.Optional(NonNeg('seconds between probes')),
    failure_threshold: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: true },
);

export const Microservice = Type.Object(
  {
    microserviceID: Type.Optional(Type.String()),
    microservice_name: Name('service name, 1-30 letters or digits'),
    microservice_namespace: Name('service namespace, 1-30 letters or digits'),
    virtualization: Virtualization,
    code: Type.String({ minLength: 1, description: 'image reference, kernel URL, executable or .wasm module' }),
    cmd: Type.Optional(Type.Array(Type.String())),
    environment: Type.Optional(Type.Array(Type.String())),
    memory: Type.Optional(NonNeg('MB')),
    vcpus: Type.Optional(NonNeg('cores')),
    vgpus: Type.Optional(NonNeg('GPUs')),
    vtpus: Type.Optional(NonNeg('TPUs')),
    bandwidth_in: Type.Optional(NonNeg('kbit/s')),
    bandwidth_out: Type.Optional(NonNeg('kbit/s')),
    storage: Type.Optional(NonNeg('MB')),
    port: Type.Optional(Type.String({ description: '[host:]container[/tcp|udp] entries joined by ";"' })),
    one_shot: Type.Optional(Type.Boolean()),
    privileged: Type.Optional(Type.Boolean()),
    addresses: Type.Optional(
      Type.Object({ rr_ip: Type.Optional(Type.String()), rr_ip_v6: Type.Optional(Type.String()) }, { additionalProperties: true }),
    ),
    constraints: Type.Optional(Type.Array(Constraint)),
    connectivity: Type.Optional(Type.Array(Type.Unknown())),
    volumes: Type.Optional(Type.Array(Type.Unknown())),
    replicas: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
    health: Type.Optional(HealthProbe),
    labels: Type.Optional(Type.Record(Type.String(), Type.String())),
  },
  { additionalProperties: true },
);
export type Microservice = Static<typeof Microservice>;

export const Application = Type.Object(
  {
    applicationID: Type.Optional(Type.String()),
    application_name: Name('application name, 1-30 letters or digits'),
    application_namespace: Name('application namespace, 1-30 letters or digits'),
    application_desc: Type.Optional(Type.String()),
    microservices: Type.Array(Microservice),
  },
  { additionalProperties: true },
);
export type Application = Static<typeof Application>;

export const Sla = Type.Object(
  {
    sla_version: Type.String({ minLength: 1 }),
    customerID: Type.String({ minLength: 1 }),
    applications: Type.Array(Application, { minItems: 1 }),
  },
  { additionalProperties: true, $id: 'Sla' },
);
export type Sla = Static<typeof Sla>;

/** One `port` entry after parsing. */
export interface PortMapping {
  hostPort?: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}
