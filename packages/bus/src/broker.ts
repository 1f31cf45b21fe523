/**
 * The embedded MQTT 3.1.1 broker (aedes) for 1-DOC and tests: one TCP listener, closed cleanly
 * (clients disconnected, sockets destroyed, port released).
 */
import { Aedes } from 'aedes';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';

export interface EmbeddedBrokerOptions {
  /** default 127.0.0.1 */
  host?: string;
  /** 0 picks a free port */
  port: number;
}

export interface EmbeddedBroker {
  /** mqtt://host:port (a wildcard host is reported as 127.0.0.1) */
  url: string;
  port: number;
  /** number of connected MQTT clients */
  readonly clients: number;
  close(): Promise<void>;
}

export async function startEmbeddedBroker(opts: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const host = opts.host ?? '127.0.0.1';
  const broker = await Aedes.createBroker();
  const sockets = new Set<Socket>();
  const server = createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    broker.handle(socket);
  });
  // a broken client connection must not take the broker down
  broker.on('clientError', () => {});
  broker.on('connectionError', () => {});
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await new Promise<void>((r) => broker.close(() => r()));
    throw err;
  }
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : opts.port;
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    url: `mqtt://${urlHost}:${port}`,
    port,
    get clients() {
      return broker.connectedClients;
    },
    close() {
      closing ??= (async () => {
        const serverClosed = new Promise<void>((r) => server.close(() => r()));
        await new Promise<void>((r) => broker.close(() => r()));
        for (const s of sockets) s.destroy();
        await serverClosed;
      })();
      return closing;
    },
  };
}
