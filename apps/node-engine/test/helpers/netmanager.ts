/** The local API of a NetManager as the NodeEngine sees it (contracts net.ts), with its key file. */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NetRegisterAnswer } from '@oak/contracts';

export interface Req { path: string; auth: string | undefined; body: Record<string, unknown> }

export class FakeNetManager {
  server: Server | undefined;
  port = 0;
  key = '';
  readonly requests: Req[] = [];
  reply: NetRegisterAnswer;
  /** answers instead of the default ones (hostile tests): [status, body text] */
  override: ((r: Req) => [number, string] | undefined) | undefined;
  constructor(readonly keyDir: string, reply: NetRegisterAnswer) {
    this.reply = reply;
  }

  async start(port = 0): Promise<void> {
    this.key = randomBytes(16).toString('hex');
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => { body += d.toString(); });
      req.on('end', () => {
        const auth = req.headers.authorization;
        let json: Record<string, unknown> = {};
        try {
          json = JSON.parse(body) as Record<string, unknown>;
        } catch { /* recorded empty */ }
        const r: Req = { path: req.url ?? '', auth, body: json };
        this.requests.push(r);
        const o = this.override?.(r);
        if (o !== undefined) return void res.writeHead(o[0], { 'content-type': 'application/json' }).end(o[1]);
        if (auth !== `Bearer ${this.key}`) return void res.writeHead(401).end('{"error":"bad key"}');
        if (req.method !== 'POST') return void res.writeHead(405).end();
        if (req.url === '/register') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(this.reply));
        if (req.url === '/instance/deploy' || req.url === '/instance/undeploy') return void res.writeHead(204).end();
        res.writeHead(404).end();
      });
    });
    const srv = this.server;
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, '127.0.0.1', () => {
        srv.off('error', reject);
        resolve();
      });
    });
    this.port = (this.server.address() as { port: number }).port;
    await writeFile(join(this.keyDir, `netmanager-${this.port}.key`), `${this.key}\n`, { mode: 0o600 });
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s === undefined) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
    s.removeAllListeners();
  }

  of(path: string): Req[] {
    return this.requests.filter((r) => r.path === path && r.auth === `Bearer ${this.key}`);
  }
}

