/**
 * Oakestra's SLA fields that this orchestrator accepts but does not honour (issue 12 point 3).
 * Each gives a warning at its path that says what happens to the value instead, so that an
 * Oakestra SLA deploys unchanged and its author learns which promises are not kept. Called by
 * the validator for every service, after the structural check (types are already reported).
 */
import type { FieldIssue } from './errors.ts';
import { childPath } from './issues.ts';
import { SERVICE_IP_SUBNET, SERVICE_IP_SUBNET_V6, ipv4InSubnet, ipv6InServiceRange, parseIPv4 } from './values.ts';

interface Sink {
  push(issue: FieldIssue): void;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const positive = (v: unknown): v is number => typeof v === 'number' && v > 0;
const nonEmpty = (v: unknown): v is string => typeof v === 'string' && v.trim() !== '';
const shown = (s: string): string => JSON.stringify(s.length > 64 ? `${s.slice(0, 61)}...` : s);

/** Whether a requested IPv4 rr_ip is outside the service range (a warning; the root then picks one of the range). */
export function rrIpOutsideRange(rr: string): boolean {
  return parseIPv4(rr) !== undefined && !ipv4InSubnet(rr, SERVICE_IP_SUBNET);
}

/** The warnings for the Oakestra fields of one service that are kept but not honoured. */
export function oakestraFieldWarnings(ms: Record<string, unknown>, path: string, warnings: Sink): void {
  const at = (k: string): string => childPath(path, k);
  if (positive(ms['vtpus'])) {
    warnings.push({ path: at('vtpus'), message: `vtpus ${ms['vtpus']} is not honoured: workers offer no TPUs, so none is reserved and placement ignores the field`, hint: 'leave vtpus out (or 0); use vgpus for GPU work' });
  }
  for (const k of ['bandwidth_in', 'bandwidth_out'] as const) {
    if (positive(ms[k])) {
      warnings.push({ path: at(k), message: `${k} ${ms[k]} kbit/s is not honoured: workers neither measure nor reserve instance bandwidth, placement ignores it`, hint: 'the value is kept with the service; leave it out (or 0) to silence this' });
    }
  }
  if (nonEmpty(ms['state'])) {
    warnings.push({ path: at('state'), message: `state ${shown(ms['state'])} is kept with the service but not fetched or restored: each instance starts from its code alone`, hint: 'fetch the state file into the instance with added_files, or keep state in a named volume' });
  }
  if (nonEmpty(ms['sla_violation_strategy'])) {
    warnings.push({ path: at('sla_violation_strategy'), message: `sla_violation_strategy ${shown(ms['sla_violation_strategy'])} is kept but not used: SLA violations are not acted on; a failed instance is restarted (restart, restart_max) and one whose worker is lost is placed again (disconnect)`, hint: 'set restart / disconnect for what should happen on failure' });
  }
  if (nonEmpty(ms['target_node'])) {
    warnings.push({ path: at('target_node'), message: `target_node ${shown(ms['target_node'])} is kept but not used for placement`, hint: `to place on that worker write "constraints": [{ "type": "direct", "node": ${shown(ms['target_node'])} }]` });
  }
  const addresses = ms['addresses'];
  if (!isRecord(addresses)) return;
  const ap = at('addresses');
  const rr = addresses['rr_ip'];
  if (typeof rr === 'string' && rrIpOutsideRange(rr)) {
    warnings.push({ path: childPath(ap, 'rr_ip'), message: `rr_ip ${rr} is outside the service range ${SERVICE_IP_SUBNET}: the service gets a free address of ${SERVICE_IP_SUBNET} instead (workers route only that range to services, unless the root's operator widened it with --extra-service-ranges)`, hint: 'pick an address 10.30.x.y to get exactly that one, or leave rr_ip out; an operator can honour it with oak-root --extra-service-ranges <CIDR>' });
  }
  const rr6 = addresses['rr_ip_v6'];
  if (typeof rr6 === 'string' && ipv6InServiceRange(rr6) === false) {
    warnings.push({ path: childPath(ap, 'rr_ip_v6'), message: `rr_ip_v6 ${rr6} is outside the IPv6 service range ${SERVICE_IP_SUBNET_V6}: the service gets a free address of ${SERVICE_IP_SUBNET_V6} instead`, hint: 'pick an address fdff::x to get exactly that one, or leave rr_ip_v6 out' });
  }
  for (const k of ['closest_ip', 'closest_ip_v6'] as const) {
    const v = addresses[k];
    if (nonEmpty(v)) {
      warnings.push({ path: childPath(ap, k), message: `${k} ${shown(v)} is not used: the root gives every service its own ${k} from the service range (answered in the service's ${k})`, hint: `leave addresses.${k} out; read the given one with oak service inspect` });
    }
  }
  const inst = addresses['instances'];
  if (Array.isArray(inst) && inst.length > 0) {
    warnings.push({ path: childPath(ap, 'instances'), message: 'addresses.instances is not used: each instance gets the lowest free address of the service range (its instance_ip)', hint: 'leave addresses.instances out' });
  }
}

/** A container or microvm whose code is a URL (Oakestra's example writes one): the pull will fail. */
export function imageUrlWarning(ms: Record<string, unknown>, path: string, warnings: Sink): void {
  const code = ms['code'];
  const virt = ms['virtualization'];
  if ((virt === 'container' || virt === 'microvm') && typeof code === 'string' && /^[a-z][a-z0-9+.-]*:\/\//i.test(code)) {
    warnings.push({ path: childPath(path, 'code'), message: `code ${shown(code)} is a URL, not an image reference: the worker pulls images by reference, so the instance will fail to pull`, hint: 'write registry/repository:tag, e.g. "docker.io/library/nginx:latest"' });
  }
}
