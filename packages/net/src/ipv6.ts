/**
 * IPv6 addresses as BigInt (0 .. 2^128-1) and prefixes. Pure.
 *
 * Parsing accepts 1..8 groups of 1..4 hex digits with at most one `::`; an embedded dotted IPv4
 * tail (`::ffff:1.2.3.4`) and zone ids (`%eth0`) are refused. Formatting follows RFC 5952:
 * lower case, no leading zeros, the longest run of two or more zero groups (the first on a tie)
 * written as `::`.
 */

export const MAX_V6 = (1n << 128n) - 1n;

export interface Subnet6 {
  network: bigint;
  prefix: number;
}

const GROUP = /^[0-9a-fA-F]{1,4}$/;

function groups(text: string): bigint[] | undefined {
  if (text === '') return [];
  const parts = text.split(':');
  const out: bigint[] = [];
  for (const p of parts) {
    if (!GROUP.test(p)) return undefined;
    out.push(BigInt(`0x${p}`));
  }
  return out;
}

export function parseIPv6(text: string): bigint | undefined {
  if (typeof text !== 'string' || text.length < 2 || text.length > 39) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  let all: bigint[];
  if (halves.length === 2) {
    const head = groups(halves[0] as string);
    const tail = groups(halves[1] as string);
    if (!head || !tail || head.length + tail.length > 7) return undefined;
    all = [...head, ...new Array<bigint>(8 - head.length - tail.length).fill(0n), ...tail];
  } else {
    const g = groups(text);
    if (!g || g.length !== 8) return undefined;
    all = g;
  }
  let n = 0n;
  for (const g of all) n = (n << 16n) | g;
  return n;
}

export function formatIPv6(n: bigint): string {
  if (n < 0n || n > MAX_V6) throw new RangeError(`${n} is not an IPv6 address`);
  const g: number[] = [];
  for (let i = 7; i >= 0; i--) g.push(Number((n >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

export function maskOf6(prefix: number): bigint {
  return prefix === 0 ? 0n : (MAX_V6 >> BigInt(128 - prefix)) << BigInt(128 - prefix);
}

/** `addr/p` with the host bits zero; throws a readable Error otherwise */
export function parseSubnet6(text: string): Subnet6 {
  const m = typeof text === 'string' && text.length <= 43 ? /^([0-9a-fA-F:]+)\/(\d{1,3})$/.exec(text.trim()) : null;
  const ip = m ? parseIPv6(m[1] as string) : undefined;
  const prefix = m ? Number(m[2]) : NaN;
  if (ip === undefined || !(prefix >= 0 && prefix <= 128)) {
    throw new Error(`${JSON.stringify(String(text).slice(0, 64))} is not an IPv6 subnet such as fdff::/64`);
  }
  if ((ip & ~maskOf6(prefix) & MAX_V6) !== 0n) throw new Error(`${text}: host bits are set (the network is ${formatIPv6(ip & maskOf6(prefix))}/${prefix})`);
  return { network: ip, prefix };
}

export function formatSubnet6(s: Subnet6): string {
  return `${formatIPv6(s.network)}/${s.prefix}`;
}

export function contains6(s: Subnet6, ip: bigint): boolean {
  return (ip & maskOf6(s.prefix)) === s.network;
}
