/**
 * `connectivity` of an application's services as scheduler rules (pure; docs/sla.md#connectivity).
 *
 * A service's entry `{ target_microservice_id, con_constraints: [{ type: "latency", threshold }] }`
 * names another service of the same application: by its microserviceID (the id the root gave it,
 * or the one written in the SLA) or by its microservice_name. As Oakestra's SLA documentation
 * says, the link is bidirectional: a rule declared by either service binds the placement of both
 * (the tighter threshold wins: every rule is enforced, so the tighter one is what counts). A target
 * that names no service of the application constrains nothing (the validator warned about it).
 */
import type { Microservice } from '@oak/contracts';
import { rigidnessOf, type PeerRule } from '@oak/scheduler';

export interface PeerService {
  id: string;
  name: string;
  job_name: string;
  sla: Microservice;
}

/** Whether `ref` (a target_microservice_id) names `s`. */
export function namesService(ref: string, s: PeerService): boolean {
  return ref === s.id || ref === s.name || (typeof s.sla.microserviceID === 'string' && s.sla.microserviceID !== '' && ref === s.sla.microserviceID);
}

/** Latency rules of `from`'s connectivity entries that name `to`. */
function rulesBetween(from: PeerService, to: PeerService): { threshold_ms: number; rigidness: number }[] {
  const out: { threshold_ms: number; rigidness: number }[] = [];
  for (const entry of from.sla.connectivity ?? []) {
    if (!namesService(entry.target_microservice_id, to)) continue;
    for (const c of entry.con_constraints) {
      // bandwidth is refused by the validator; an older stored SLA holding one constrains nothing here
      if (c.type !== 'latency') continue;
      const r = rigidnessOf(c);
      if (r > 0) out.push({ threshold_ms: c.threshold, rigidness: r });
    }
  }
  return out;
}

/**
 * The rules binding the placement of `self`: its own entries and the entries of its siblings that
 * name it, each with the workers the other service runs on now (`workersOf`, by service id).
 */
export function peerRulesOf(self: PeerService, siblings: readonly PeerService[], workersOf: (serviceId: string) => readonly string[]): PeerRule[] {
  const out: PeerRule[] = [];
  for (const other of siblings) {
    if (other.id === self.id) continue;
    const rules = [...rulesBetween(self, other), ...rulesBetween(other, self)];
    if (rules.length === 0) continue;
    const workers = [...new Set(workersOf(other.id))].sort();
    for (const r of rules) out.push({ target: other.job_name, threshold_ms: r.threshold_ms, rigidness: r.rigidness, workers });
  }
  return out;
}

/** Whether any service of the application has a connectivity rule (else nothing needs to be read). */
export function hasConnectivity(services: readonly PeerService[]): boolean {
  return services.some((s) => (s.sla.connectivity ?? []).some((e) => e.con_constraints.length > 0));
}
