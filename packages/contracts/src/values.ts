/**
 * Parsers for the small string formats of the SLA and the settings: port lists, locations and
 * IPv4 addresses. Pure functions, no I/O (usable in the browser too).
 */
import { OakError } from './errors.ts';
import type { PortMapping } from './sla.ts';

const PORT_HINT = 'write [host:]container[/tcp|udp] entries joined by ";", e.g. "8080:80/tcp;9000/udp"';

function portNumber(text: string, which: string, entry: string): number {
  if (!/^\d{1,5}$/.test(text)) {
    throw new OakError('OAK_VALIDATION', `port entry ${JSON.stringify(entry)}: ${which} port ${JSON.stringify(text)} is not a number`, { hint: PORT_HINT });
  }
  const n = Number(text);
  if (n < 1 || n > 65535) {
    throw new OakError('OAK_VALIDATION', `port entry ${JSON.stringify(entry)}: ${which} port ${n} is outside 1-65535`, { hint: 'use a port between 1 and 65535' });
  }
  return n;
}

/**
 * Parses an SLA `port` string: `[host:]container[/tcp|udp]` entries joined by `;`.
 * The protocol defaults to tcp; an empty string means no ports; a trailing `;` is tolerated.
 * Throws OakError('OAK_VALIDATION') with a hint on the first bad entry, and when the same host
 * port (or, without host port, the same container port) is given twice for one protocol.
 */
export function parsePorts(port: string): PortMapping[] {
  const out: PortMapping[] = [];
  const seen = new Map<string, string>();
  const entries = port.split(';').map((e) => e.trim());
  entries.forEach((entry, i) => {
    if (entry === '') {
      if (i === entries.length - 1) return;
      if (port.trim() === '') return;
      throw new OakError('OAK_VALIDATION', `port list ${JSON.stringify(port)} has an empty entry`, { hint: PORT_HINT });
    }
    const m = /^(?:([^:/]*):)?([^:/]*)(?:\/([^/]*))?$/.exec(entry);
    if (!m) {
      throw new OakError('OAK_VALIDATION', `port entry ${JSON.stringify(entry)} is not [host:]container[/tcp|udp]`, { hint: PORT_HINT });
    }
    const [, hostText, containerText = '', protoText] = m;
    let protocol: 'tcp' | 'udp' = 'tcp';
    if (protoText !== undefined) {
      const p = protoText.toLowerCase();
      if (p !== 'tcp' && p !== 'udp') {
        throw new OakError('OAK_VALIDATION', `port entry ${JSON.stringify(entry)}: protocol ${JSON.stringify(protoText)} is not tcp or udp`, { hint: 'end the entry with /tcp or /udp, or leave the protocol out for tcp' });
      }
      protocol = p;
    }
    const containerPort = portNumber(containerText, 'container', entry);
    const mapping: PortMapping = { containerPort, protocol };
    if (hostText !== undefined) mapping.hostPort = portNumber(hostText, 'host', entry);
    const key = `${mapping.hostPort ?? containerPort}/${protocol}`;
    const before = seen.get(key);
    if (before !== undefined) {
      throw new OakError('OAK_VALIDATION', `port entries ${JSON.stringify(before)} and ${JSON.stringify(entry)} both use port ${key}`, { hint: 'give each entry its own host port' });
    }
    seen.set(key, entry);
    out.push(mapping);
  });
  return out;
}

export interface Location {
  lat: number;
  long: number;
  radius_km?: number;
}

/** Why a location string is not `lat,long[,radius]`; undefined when it is one. */
export function locationProblem(s: string): string | undefined {
  const parts = s.split(',').map((p) => p.trim());
  if (parts.length < 2 || parts.length > 3) return `${JSON.stringify(s)} is not "lat,long" or "lat,long,radius"`;
  const nums = parts.map((p) => (/^[+-]?(\d+(\.\d*)?|\.\d+)$/.test(p) ? Number(p) : Number.NaN));
  const [lat = Number.NaN, long = Number.NaN, radius] = nums;
  if (Number.isNaN(lat) || Number.isNaN(long) || (radius !== undefined && Number.isNaN(radius))) {
    return `${JSON.stringify(s)} is not "lat,long" or "lat,long,radius" with decimal numbers`;
  }
  if (lat < -90 || lat > 90) return `latitude ${lat} is outside -90..90`;
  if (long < -180 || long > 180) return `longitude ${long} is outside -180..180`;
  if (radius !== undefined && radius < 0) return `radius ${radius} must not be negative`;
  return undefined;
}

/**
 * Parses `"lat,long"` or `"lat,long,radius_km"` (decimal degrees; spaces allowed around the
 * numbers). Undefined when the text is not one (free text such as "Munich", out-of-range degrees).
 */
export function parseLocation(s: string): Location | undefined {
  if (locationProblem(s) !== undefined) return undefined;
  const [lat, long, radius] = s.split(',').map((p) => Number(p.trim()));
  if (lat === undefined || long === undefined) return undefined;
  return radius === undefined ? { lat, long } : { lat, long, radius_km: radius };
}

/** Dotted-quad IPv4 to an unsigned 32-bit number; undefined when it is not one (no leading zeros). */
export function parseIPv4(s: string): number | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

/** True when `ip` lies in `cidr` (both IPv4, e.g. "10.30.0.0/16"). */
export function ipv4InSubnet(ip: string, cidr: string): boolean {
  const [base = '', bitsText = ''] = cidr.split('/');
  const a = parseIPv4(ip);
  const b = parseIPv4(base);
  const bits = Number(bitsText);
  if (a === undefined || b === undefined || !Number.isInteger(bits) || bits < 0 || bits > 32) return false;
  const size = 2 ** (32 - bits);
  return Math.floor(a / size) === Math.floor(b / size);
}

/** The range service IPs (`addresses.rr_ip`) come from. */
export const SERVICE_IP_SUBNET = '10.30.0.0/16';

/** A loose IPv6 syntax check (hex groups, at most one `::`, optional trailing IPv4). */
export function isIPv6(s: string): boolean {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || !s.includes(':')) return false;
  const double = s.split('::');
  if (double.length > 2) return false;
  let groups = s.split(':').filter((g) => g !== '');
  const last = groups[groups.length - 1];
  let count = groups.length;
  if (last !== undefined && last.includes('.')) {
    if (parseIPv4(last) === undefined) return false;
    groups = groups.slice(0, -1);
    count += 1;
  }
  if (!groups.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return false;
  return double.length === 2 ? count < 8 : count === 8;
}

/** The range IPv6 service IPs (`addresses.rr_ip_v6`) come from. */
export const SERVICE_IP_SUBNET_V6 = 'fdff::/64';

/** The eight 16-bit groups of an IPv6 address (undefined when it is not one). */
function ipv6Groups(s: string): number[] | undefined {
  if (s.length > 45 || !isIPv6(s)) return undefined;
  let text = s;
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail !== null) {
    const v4 = parseIPv4(tail[1] ?? '');
    if (v4 === undefined) return undefined;
    text = `${text.slice(0, -(tail[1] ?? '').length)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const [head = '', rest] = text.split('::');
  const h = head === '' ? [] : head.split(':');
  const r = rest === undefined || rest === '' ? [] : rest.split(':');
  const fill = rest === undefined ? 0 : 8 - h.length - r.length;
  const groups = [...h, ...Array<string>(Math.max(0, fill)).fill('0'), ...r].map((g) => parseInt(g, 16));
  return groups.length === 8 ? groups : undefined;
}

/** True inside fdff::/64, false outside, undefined when `s` is not an IPv6 address. */
export function ipv6InServiceRange(s: string): boolean | undefined {
  const g = ipv6Groups(s);
  if (g === undefined) return undefined;
  return g[0] === 0xfdff && g[1] === 0 && g[2] === 0 && g[3] === 0;
}
