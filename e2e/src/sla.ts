/** SLAs used by the end-to-end tests. */
import type { Virtualization } from '@oak/contracts';

/**
 * `sleep <seconds>` that ends on SIGTERM, as a well-behaved service does: a bare `sleep` as the
 * container's PID 1 ignores it, and every stop would wait out the runtime's 10 s grace.
 */
export function sleeper(seconds: number): string[] {
  return ['sh', '-c', `trap 'exit 0' TERM; sleep ${seconds} & wait`];
}

export interface SvcOpts {
  app?: string;
  svc?: string;
  virtualization?: Virtualization;
  code: string;
  cmd?: string[];
  memory?: number;
  vcpus?: number;
  one_shot?: boolean;
  constraints?: unknown[];
  replicas?: number;
  /** more fields of the microservice (health, restart, args...) */
  extra?: Record<string, unknown>;
}

export function sla(o: SvcOpts): Record<string, unknown> {
  return {
    sla_version: 'v2.0',
    customerID: 'Admin',
    applications: [
      {
        application_name: o.app ?? 'e2eapp',
        application_namespace: 'test',
        application_desc: 'end-to-end test',
        microservices: [
          {
            microservice_name: o.svc ?? 'svc',
            microservice_namespace: 'test',
            virtualization: o.virtualization ?? 'container',
            code: o.code,
            ...(o.cmd ? { cmd: o.cmd } : {}),
            memory: o.memory ?? 32,
            vcpus: o.vcpus ?? 0.1,
            ...(o.one_shot !== undefined ? { one_shot: o.one_shot } : {}),
            ...(o.constraints ? { constraints: o.constraints } : {}),
            ...(o.replicas !== undefined ? { replicas: o.replicas } : {}),
            ...o.extra,
          },
        ],
      },
    ],
  };
}
