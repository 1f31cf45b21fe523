/**
 * First contact and pinned TLS (docs/security.md). `fetchPinnedCa` opens TLS without verifying,
 * takes the CA certificate from the chain the server presents and accepts it only when its
 * fingerprint is the one the join token carries. `pinnedTlsOptions` then verifies every later
 * connection against that CA alone and against the service name in the leaf's SAN (`oak-root`,
 * `oak-cluster`), whatever address was dialled (edge devices move, NAT rewrites addresses).
 */
import { X509Certificate, createHash } from 'node:crypto';
import { isIP } from 'node:net';
import * as tls from 'node:tls';
import { OakError } from '@oak/contracts';

/** SHA-256 of a DER certificate, 64 lower-case hex digits. */
export function derFingerprint(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex');
}

export const ROOT_SERVICE_NAME = 'oak-root';
export const CLUSTER_SERVICE_NAME = 'oak-cluster';

export interface FetchPinnedCaOptions {
  /** SNI and the name in messages (default: the service name is not sent, host is used) */
  servername?: string;
  /** ALPN protocols to offer (default ['h2', 'http/1.1']: gRPC and HTTPS servers both answer) */
  alpn?: string[];
  /** default 10 s */
  timeoutMs?: number;
}

function toPem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

/** The certificates the peer presented, leaf first (cycles cut). */
function presentedChain(socket: tls.TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  const seen = new Set<string>();
  let c: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (c && c.raw && c.raw.length > 0) {
    const fp = derFingerprint(c.raw);
    if (seen.has(fp)) break;
    seen.add(fp);
    out.push(c.raw);
    c = c.issuerCertificate;
  }
  return out;
}

export interface PresentedCa {
  /** the CA certificate (PEM) */
  pem: string;
  /** its SHA-256, 64 lower-case hex */
  fingerprint: string;
}

/**
 * Trust on first use (the CLI's first HTTPS login): connects without verifying and returns the
 * CA of the chain the server presents (the topmost certificate that is a CA and issued the
 * leaf's chain; a self-signed leaf stands for itself). The caller shows the fingerprint.
 */
export async function fetchPresentedCa(host: string, port: number, opts: FetchPinnedCaOptions = {}): Promise<PresentedCa> {
  const chain = await presentedDer(host, port, opts);
  const certs = chain.map((der) => ({ der, x: new X509Certificate(der) }));
  const top = certs[certs.length - 1];
  const pick = [...certs].reverse().find((c) => c.x.ca) ?? (top && top.x.verify(top.x.publicKey) ? top : undefined);
  if (!pick) {
    throw new OakError('OAK_UNAVAILABLE', `the server at ${host}:${port} presents no CA certificate and no self-signed one`, {
      hint: 'give the CA that issued its certificate with --ca-file',
    });
  }
  return { pem: toPem(pick.der), fingerprint: derFingerprint(pick.der) };
}

function presentedDer(host: string, port: number, opts: FetchPinnedCaOptions): Promise<Buffer[]> {
  const where = `${host}:${port}`;
  return new Promise<Buffer[]>((resolve, reject) => {
    let done = false;
    const finish = (err: Error | undefined, chain?: Buffer[]): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(chain ?? []);
    };
    const connectOpts: tls.ConnectionOptions = { host, port, rejectUnauthorized: false, ALPNProtocols: opts.alpn ?? ['h2', 'http/1.1'] };
    if (opts.servername !== undefined) connectOpts.servername = opts.servername;
    else if (isIP(host) === 0) connectOpts.servername = host;
    const socket = tls.connect(connectOpts);
    const timer = setTimeout(() => {
      finish(new OakError('OAK_UNAVAILABLE', `no TLS answer from ${where} within ${opts.timeoutMs ?? 10_000} ms`, { hint: 'check the address and port, and that the server there serves TLS' }));
    }, opts.timeoutMs ?? 10_000);
    timer.unref?.();
    socket.once('secureConnect', () => finish(undefined, presentedChain(socket)));
    socket.once('error', (e: NodeJS.ErrnoException) => {
      finish(new OakError('OAK_UNAVAILABLE', `cannot open TLS to ${where}: ${e.code ?? e.message}`, { hint: 'check the address and port, and that the server is running and serves TLS', cause: e }));
    });
    socket.once('close', () => finish(new OakError('OAK_UNAVAILABLE', `${where} closed the connection before the TLS handshake ended`)));
  });
}

/**
 * Connects to host:port, finds the CA certificate whose SHA-256 is `caHash` in the chain the
 * server presents, checks that the server's leaf was issued by it, and returns it as PEM.
 * Throws OakError: OAK_JOIN_TOKEN_INVALID when the fingerprints differ, OAK_UNAVAILABLE when
 * the server cannot be reached.
 */
export async function fetchPinnedCa(host: string, port: number, caHash: string, opts: FetchPinnedCaOptions = {}): Promise<string> {
  const want = caHash.trim().toLowerCase();
  const where = `${host}:${port}`;
  const chain = await presentedDer(host, port, opts);
  if (chain.length === 0) throw new OakError('OAK_JOIN_TOKEN_INVALID', `the server at ${where} presents no certificate`, { hint: 'this is not an oak root or cluster' });
  let certs: { der: Buffer; fp: string; x: X509Certificate }[];
  try {
    certs = chain.map((der) => ({ der, fp: derFingerprint(der), x: new X509Certificate(der) }));
  } catch (e) {
    throw new OakError('OAK_JOIN_TOKEN_INVALID', `cannot read the certificates of ${where}: ${(e as Error).message}`);
  }
  const match = certs.find((c) => c.fp === want);
  if (!match || !match.x.ca) {
    const cas = certs.filter((c) => c.x.ca);
    const shown = cas.length > 0 ? cas.map((c) => c.fp).join(', ') : `none (its certificate is ${certs[0]?.fp ?? '?'})`;
    throw new OakError('OAK_JOIN_TOKEN_INVALID', `the server at ${where} presents a CA with fingerprint ${shown}, the join token expects ${want}`, {
      hint: 'check that the token was created by the root this address points to (`oak token create ...`); if it was, something between you and it is intercepting the connection',
    });
  }
  const leaf = certs[0]?.x;
  if (leaf && leaf !== match.x && !leaf.verify(match.x.publicKey)) {
    throw new OakError('OAK_JOIN_TOKEN_INVALID', `the server at ${where} presents the expected CA ${want} but a certificate it did not issue`, {
      hint: 'something between you and the server is intercepting the connection',
    });
  }
  return toPem(match.der);
}

/**
 * Client options that trust `caPem` only and accept the server when its SAN names the dialled
 * host or `serviceName` (for a CA pinned to one root, its service name identifies it too).
 */
export function pinnedHostTlsOptions(caPem: string, serviceName: string): tls.ConnectionOptions {
  return {
    ca: caPem,
    rejectUnauthorized: true,
    checkServerIdentity: (host: string, cert: tls.PeerCertificate) => {
      const byHost = tls.checkServerIdentity(host, cert);
      return byHost === undefined ? undefined : tls.checkServerIdentity(serviceName, cert);
    },
  };
}

/**
 * Client options that trust `caPem` only and require `serviceName` in the server's SAN,
 * whatever host name or address was dialled. Spread them into tls.connect / https.request.
 */
export function pinnedTlsOptions(caPem: string, serviceName: string): tls.ConnectionOptions {
  return {
    ca: caPem,
    servername: serviceName,
    rejectUnauthorized: true,
    checkServerIdentity: (_host: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(serviceName, cert),
  };
}
