/**
 * What a service runs, as one comparable string: two versions with the same fingerprint run the
 * same thing. JSON of [job_name, sla] with the keys of every object sorted (recursively), so that
 * the order in which a client wrote the SLA's fields does not matter; array order does.
 */
import type { Microservice } from '@oak/contracts';

function sorted(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sorted);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = sorted((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

export function serviceFingerprint(jobName: string, sla: Microservice | unknown): string {
  return JSON.stringify([jobName, sorted(sla)]);
}
