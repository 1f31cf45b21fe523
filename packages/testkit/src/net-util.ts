import { readFileSync } from 'node:fs';
import { connect } from 'node:net';

/** true when a TCP connection to host:port succeeds within `timeoutMs` */
export function canConnectTcp(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const t = setTimeout(() => { s.destroy(); resolve(false); }, timeoutMs);
    s.once('connect', () => { clearTimeout(t); s.destroy(); resolve(true); });
    s.once('error', () => { clearTimeout(t); resolve(false); });
  });
}

/**
 * Established TCP connections in this network namespace (IPv4 and IPv6, /proc/net/tcp{,6}) with
 * `port` at either end; a connection inside one process counts twice (both of its ends).
 */
export function establishedTcp(port: number): number {
  let n = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] !== '01') continue; // 01: ESTABLISHED
      const portOf = (a: string | undefined): number => (a === undefined ? -1 : parseInt(a.slice(a.lastIndexOf(':') + 1), 16));
      if (portOf(f[1]) === port || portOf(f[2]) === port) n++;
    }
  }
  return n;
}
