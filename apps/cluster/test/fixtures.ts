/** Small builders shared by the cluster tests. */
import type { InstanceAssignment, Microservice, NodeInformation, NodeRegistration, Virtualization } from '@oak/contracts';

export function service(opts: { vcpus?: number; memory?: number; virtualization?: Virtualization; name?: string } = {}): Microservice {
  return {
    microservice_name: opts.name ?? 'web',
    microservice_namespace: 'test',
    virtualization: opts.virtualization ?? 'container',
    code: 'docker.io/library/nginx:latest',
    vcpus: opts.vcpus ?? 1,
    memory: opts.memory ?? 100,
  };
}

export function assignment(job: string, n: number, opts: { vcpus?: number; memory?: number; worker_id?: string | null; virtualization?: Virtualization } = {}): InstanceAssignment {
  const a: InstanceAssignment = { microserviceID: `svc-${job}`, job_name: job, instance_number: n, service: service(opts) };
  if (opts.worker_id !== undefined) a.worker_id = opts.worker_id;
  return a;
}

export function registration(name: string, cores = 4, memory = 4096, virtualizations: Virtualization[] = ['container', 'process']): NodeRegistration {
  return { node_name: name, host: '127.0.0.1', cpu_cores: cores, memory_mb: memory, arch: 'x86_64', os: 'linux', virtualizations };
}

export function information(running: string[] = [], cores = 4, memory = 4096, virtualizations: Virtualization[] = ['container', 'process']): NodeInformation {
  return {
    cpu_percent: 5,
    cpu_cores: cores,
    memory_free_mb: memory,
    memory_total_mb: memory,
    disk_free_mb: 10_000,
    gpus: 0,
    virtualizations,
    running_instances: running,
    timestamp: Date.now(),
  };
}
