/** Oakestra's naming: job `<app>.<appns>.<svc>.<svcns>`, instance `<job>.instance.<n>`. */
export interface JobNameParts {
  application_name: string;
  application_namespace: string;
  microservice_name: string;
  microservice_namespace: string;
}

export function jobName(p: JobNameParts): string {
  return `${p.application_name}.${p.application_namespace}.${p.microservice_name}.${p.microservice_namespace}`;
}

export function instanceName(job: string, n: number): string {
  return `${job}.instance.${n}`;
}

/** Splits an instance name back into job name and number; undefined when it is not one. */
export function parseInstanceName(name: string): { job_name: string; instance_number: number } | undefined {
  const m = /^(.+)\.instance\.(\d+)$/.exec(name);
  if (!m || !m[1] || !m[2]) return undefined;
  return { job_name: m[1], instance_number: Number(m[2]) };
}

/** DNS name of a service inside the overlay: `<svc>.<svcns>.<app>.<appns>.oak`. */
export function serviceDnsName(p: JobNameParts): string {
  return `${p.microservice_name}.${p.microservice_namespace}.${p.application_name}.${p.application_namespace}.oak`;
}
