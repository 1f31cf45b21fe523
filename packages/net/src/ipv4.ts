/** IPv4 addresses and prefixes as numbers. Pure. */

export interface Subnet {
  /** network address as an unsigned 32-bit number */
  network: number;
  prefix: number;
}

export function parseIPv4(text: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i] as string;
    if (part.length > 1 && part.startsWith('0')) return undefined;
    const v = Number(part);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** `a.b.c.d/p` with the host bits zero; throws a readable Error otherwise */
export function parseSubnet(text: string): Subnet {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text.trim());
  const ip = m ? parseIPv4(m[1] as string) : undefined;
  const prefix = m ? Number(m[2]) : NaN;
  if (ip === undefined || !(prefix >= 0 && prefix <= 32)) throw new Error(`${JSON.stringify(text)} is not an IPv4 subnet such as 172.30.0.0/24`);
  if ((ip & ~maskOf(prefix)) >>> 0 !== 0) throw new Error(`${text}: host bits are set (the network is ${formatIPv4((ip & maskOf(prefix)) >>> 0)}/${prefix})`);
  return { network: ip, prefix };
}

export function formatSubnet(s: Subnet): string {
  return `${formatIPv4(s.network)}/${s.prefix}`;
}

export function contains(s: Subnet, ip: number): boolean {
  return ((ip & maskOf(s.prefix)) >>> 0) === s.network;
}

export function overlaps(a: Subnet, b: Subnet): boolean {
  const p = Math.min(a.prefix, b.prefix);
  const m = maskOf(p);
  return ((a.network & m) >>> 0) === ((b.network & m) >>> 0);
}

export function size(s: Subnet): number {
  return 2 ** (32 - s.prefix);
}

/** RFC 1918 private ranges */
export const PRIVATE_RANGES: readonly Subnet[] = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'].map(parseSubnet);

export function isPrivate(s: Subnet): boolean {
  return PRIVATE_RANGES.some((r) => r.prefix <= s.prefix && contains(r, s.network));
}
