/**
 * DNS names of the overlay (SPEC §8) and the worker's upstream resolvers. Pure.
 *
 *   `<svc>.<svcns>.<app>.<appns>.oak`      -> the service (its round-robin IP)
 *   `<n>.<svc>.<svcns>.<app>.<appns>.oak`  -> instance n of the service (its instance IP)
 *
 * The job of both names is `<app>.<appns>.<svc>.<svcns>` (contracts/naming.ts). DNS compares
 * names case-insensitively, so everything parsed here comes back in lower case: the job name a
 * name maps to is the lower-cased job name, and whoever looks it up must compare job names
 * case-insensitively (SLA names may carry upper case letters, DNS cannot tell them apart).
 *
 * Labels follow RFC 1035's preferred syntax (letters, digits, inner hyphens, 1..63 characters),
 * the whole name at most 253 characters without its optional trailing dot. The instance number
 * is decimal without leading zeros, 0..1,000,000 (the IPAM's limit). Anything else is `undefined`.
 */
import { formatIPv4, parseIPv4 } from './ipv4.ts';
import { formatIPv6, parseIPv6 } from './ipv6.ts';

/** the overlay's DNS zone (names end in `.oak`) */
export const OVERLAY_ZONE = 'oak';
/** the largest instance number a name may carry (the IPAM's MAX_INSTANCE) */
export const MAX_NAME_INSTANCE = 1_000_000;
/** resolv.conf's MAXNS: a resolver reads at most this many `nameserver` lines */
export const MAX_UPSTREAMS = 3;

const MAX_NAME = 253;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const NUMBER = /^(?:0|[1-9][0-9]{0,6})$/;

export interface OverlayService {
  app: string;
  appns: string;
  svc: string;
  svcns: string;
}

export interface OverlayName {
  /** `<app>.<appns>.<svc>.<svcns>`, lower case */
  job_name: string;
  /** set for an instance name (`<n>.<svc>...`) */
  instance_number?: number;
  service: OverlayService;
}

/** The labels of `name` (lower case, trailing dot dropped) when it is a valid DNS name, else undefined. */
export function dnsLabels(name: unknown): string[] | undefined {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME + 1) return undefined;
  const text = (name.endsWith('.') ? name.slice(0, -1) : name).toLowerCase();
  if (text.length === 0 || text.length > MAX_NAME) return undefined;
  const labels = text.split('.');
  for (const l of labels) if (!LABEL.test(l)) return undefined;
  return labels;
}

/** Whether `name` lies inside `zone` (the zone itself included); case-insensitive, trailing dots allowed. */
export function inZone(name: string, zone: string = OVERLAY_ZONE): boolean {
  if (typeof name !== 'string' || typeof zone !== 'string' || name.length > 1024) return false;
  const n = name.toLowerCase().replace(/\.$/, '');
  const z = zone.toLowerCase().replace(/\.$/, '');
  if (z === '') return true;
  return n === z || n.endsWith(`.${z}`);
}

/** Parses an overlay service or instance name (see the header); undefined for anything else. */
export function parseOverlayName(name: string, zone: string = OVERLAY_ZONE): OverlayName | undefined {
  const labels = dnsLabels(name);
  const zoneLabels = dnsLabels(zone);
  if (!labels || !zoneLabels) return undefined;
  const tail = labels.slice(labels.length - zoneLabels.length);
  if (tail.length !== zoneLabels.length || tail.some((l, i) => l !== zoneLabels[i])) return undefined;
  const head = labels.slice(0, labels.length - zoneLabels.length);
  let instance: number | undefined;
  if (head.length === 5) {
    const n = head.shift() as string;
    if (!NUMBER.test(n)) return undefined;
    instance = Number(n);
    if (instance > MAX_NAME_INSTANCE) return undefined;
  }
  if (head.length !== 4) return undefined;
  const [svc, svcns, app, appns] = head as [string, string, string, string];
  const out: OverlayName = { job_name: `${app}.${appns}.${svc}.${svcns}`, service: { app, appns, svc, svcns } };
  if (instance !== undefined) out.instance_number = instance;
  return out;
}

/**
 * The DNS name of a job (`<app>.<appns>.<svc>.<svcns>`), or of its instance `n`; lower case,
 * without trailing dot. Undefined when the job name's parts are not DNS labels, the instance
 * number is out of range, or the name would be too long.
 */
export function overlayNameOf(jobName: string, n?: number, zone: string = OVERLAY_ZONE): string | undefined {
  if (typeof jobName !== 'string' || jobName.length > MAX_NAME || jobName.endsWith('.')) return undefined;
  const parts = dnsLabels(jobName);
  const zoneLabels = dnsLabels(zone);
  if (!parts || parts.length !== 4 || !zoneLabels) return undefined;
  if (n !== undefined && (!Number.isSafeInteger(n) || n < 0 || n > MAX_NAME_INSTANCE)) return undefined;
  const [app, appns, svc, svcns] = parts as [string, string, string, string];
  const labels = [svc, svcns, app, appns, ...zoneLabels];
  if (n !== undefined) labels.unshift(String(n));
  const name = labels.join('.');
  return name.length <= MAX_NAME ? name : undefined;
}

export interface ReadUpstreamsOptions {
  /** addresses never to forward to (the resolver's own listen addresses: no loops) */
  exclude?: string[];
  /** default MAX_UPSTREAMS (3) */
  max?: number;
}

function canonicalIp(text: string): string | undefined {
  const v4 = parseIPv4(text);
  if (v4 !== undefined) return formatIPv4(v4);
  const v6 = parseIPv6(text);
  return v6 === undefined ? undefined : formatIPv6(v6);
}

function usable(ip: string): boolean {
  if (ip === '0.0.0.0' || ip === '255.255.255.255' || ip === '::') return false;
  const v4 = parseIPv4(ip);
  if (v4 !== undefined) return v4 >>> 28 !== 0xe; // not multicast (224/4)
  return !ip.startsWith('ff'); // not IPv6 multicast (ff00::/8)
}

/**
 * The upstream resolvers of a resolv.conf text: the addresses of its `nameserver` lines, in
 * order, canonical (IPv4 dotted, IPv6 RFC 5952), without duplicates, at most `max` (3). Lines
 * that are comments (`#`, `;`), malformed, scoped (`fe80::1%eth0`), unspecified, multicast or
 * one of `exclude` are skipped. Loopback resolvers (e.g. systemd-resolved's 127.0.0.53) are
 * kept: the NetManager runs in the host's namespace and reaches them for its instances.
 */
export function readUpstreams(resolvConfText: string, opts: ReadUpstreamsOptions = {}): string[] {
  if (typeof resolvConfText !== 'string') return [];
  const max = Math.max(0, Math.min(opts.max ?? MAX_UPSTREAMS, 16));
  const exclude = new Set((opts.exclude ?? []).map((e) => canonicalIp(e) ?? e));
  const out: string[] = [];
  // a resolv.conf is small; a huge file is read only in its first 64 KiB
  for (const raw of resolvConfText.slice(0, 65536).split(/\r?\n/)) {
    if (out.length >= max) break;
    const line = raw.replace(/[#;].*$/, '').trim();
    const m = /^nameserver\s+(\S+)$/.exec(line);
    if (!m) continue;
    const ip = canonicalIp(m[1] as string);
    if (ip === undefined || !usable(ip) || exclude.has(ip) || out.includes(ip)) continue;
    out.push(ip);
  }
  return out;
}
