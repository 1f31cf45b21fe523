/**
 * HTTPS for the REST API (docs/security.md): a second listener (default port 10443) that hands
 * every request to the same fastify app as the plain HTTP one on 10000 (kept for Oakestra
 * compatibility; loopback or trusted networks only). The certificate is given
 * (`--tls-cert/--tls-key`) or issued at each start from the root CA (`--tls auto`, SAN oak-root,
 * localhost, the host name, the loopback addresses and `--tls-san` names).
 */
import { readFile } from 'node:fs/promises';
import * as https from 'node:https';
import { hostname } from 'node:os';
import { isIP, type AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { OakError } from '@oak/contracts';
import { ROOT_SERVICE_NAME, issueIdentity } from '@oak/trust';
import type { RootTrust } from './trust.ts';

export const DEFAULT_HTTPS_PORT = 10443;

export type RootTlsConfig = { mode: 'auto'; sans?: string[] } | { mode: 'files'; certFile: string; keyFile: string };

export interface HttpsListener {
  port: number;
  url: string;
  close(): Promise<void>;
}

async function material(tls: RootTlsConfig, trust: RootTrust): Promise<{ key: string; cert: string }> {
  if (tls.mode === 'files') {
    try {
      return { cert: await readFile(tls.certFile, 'utf8'), key: await readFile(tls.keyFile, 'utf8') };
    } catch (err) {
      throw new OakError('OAK_VALIDATION', `cannot read the TLS certificate or key: ${(err as Error).message}`, { hint: 'give PEM files with --tls-cert and --tls-key, or use --tls auto' });
    }
  }
  const names = new Set([ROOT_SERVICE_NAME, 'localhost', hostname(), ...(tls.sans ?? [])]);
  const dns = [...names].filter((n) => isIP(n) === 0 && /^[A-Za-z0-9*]([A-Za-z0-9-.]{0,251}[A-Za-z0-9])?$/.test(n));
  const ips = ['127.0.0.1', '::1', ...[...names].filter((n) => isIP(n) !== 0)];
  const id = await issueIdentity(trust.ca, { commonName: ROOT_SERVICE_NAME, dnsNames: dns, ipAddresses: ips, days: 825 });
  return { key: id.keyPem, cert: id.chainPem };
}

export async function startHttps(app: FastifyInstance, o: { host: string; port: number; tls: RootTlsConfig; trust: RootTrust }): Promise<HttpsListener> {
  const { key, cert } = await material(o.tls, o.trust);
  const server = https.createServer({ key, cert, minVersion: 'TLSv1.2' }, (req, res) => {
    app.server.emit('request', req, res);
  });
  server.on('tlsClientError', () => undefined);
  // the same timeouts as the plain listener
  server.requestTimeout = app.server.requestTimeout;
  server.headersTimeout = app.server.headersTimeout;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shown = addr.family === 'IPv6' ? `[${addr.address === '::' ? '::1' : addr.address}]` : addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address;
  return {
    port: addr.port,
    url: `https://${shown}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
