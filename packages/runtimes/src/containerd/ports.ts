/**
 * Port mappings for containers on the host network. A container on the host network already
 * listens on its `containerPort` on the host, so `port: "80"` or `"80:80"` needs nothing. For
 * `host:container` with host != container this forwards `hostPort` to `127.0.0.1:containerPort`
 * with a small userspace proxy (TCP: a socket pair per connection; UDP: one upstream socket per
 * client address, closed after 60 s idle). It lives in the NodeEngine process and is re-armed
 * for adopted containers (list()). A userspace proxy needs no firewall rules, so it cannot clash
 * with other tools' iptables/nftables state, and it also forwards traffic from localhost.
 */
import { createServer, connect } from 'node:net';
import type { Server, Socket } from 'node:net';
import { createSocket } from 'node:dgram';
import type { Socket as UdpSocket, RemoteInfo } from 'node:dgram';
import type { PortMapping } from '@oak/contracts';

export interface PortProxy {
  close(): Promise<void>;
}

/** the mappings that need a proxy (host port given and different from the container port) */
export function mappingsNeedingProxy(ports: PortMapping[]): PortMapping[] {
  return ports.filter((p) => p.hostPort !== undefined && p.hostPort !== p.containerPort);
}

export async function startPortProxy(ports: PortMapping[], bindAddress: string, targetHost = '127.0.0.1'): Promise<PortProxy> {
  const closers: (() => Promise<void>)[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(closers.map((c) => c().catch(() => undefined)));
  };
  try {
    for (const p of mappingsNeedingProxy(ports)) {
      const hostPort = p.hostPort as number;
      if (p.protocol === 'udp') closers.push(await udpProxy(bindAddress, hostPort, targetHost, p.containerPort));
      else closers.push(await tcpProxy(bindAddress, hostPort, targetHost, p.containerPort));
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { close };
}

function tcpProxy(bind: string, port: number, host: string, target: number): Promise<() => Promise<void>> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect({ host, port: target });
    sockets.add(client);
    sockets.add(upstream);
    const done = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, bind, () => {
      server.off('error', reject);
      resolve(() => new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }));
    });
  });
}

function udpProxy(bind: string, port: number, host: string, target: number): Promise<() => Promise<void>> {
  const family = bind.includes(':') ? 'udp6' : 'udp4';
  const front: UdpSocket = createSocket(family);
  const clients = new Map<string, { sock: UdpSocket; timer: NodeJS.Timeout }>();
  const IDLE_MS = 60_000;
  front.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
    const key = `${rinfo.address}:${rinfo.port}`;
    let c = clients.get(key);
    if (!c) {
      const sock = createSocket('udp4');
      sock.on('message', (reply) => front.send(reply, rinfo.port, rinfo.address));
      sock.on('error', () => undefined);
      c = { sock, timer: setTimeout(() => undefined, 0) };
      clients.set(key, c);
    }
    const entry = c;
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      entry.sock.close();
      clients.delete(key);
    }, IDLE_MS);
    entry.timer.unref();
    entry.sock.send(msg, target, host);
  });
  return new Promise((resolve, reject) => {
    front.once('error', reject);
    front.bind(port, bind, () => {
      front.off('error', reject);
      front.on('error', () => undefined);
      resolve(() => new Promise<void>((r) => {
        for (const c of clients.values()) {
          clearTimeout(c.timer);
          c.sock.close();
        }
        clients.clear();
        front.close(() => r());
      }));
    });
  });
}
