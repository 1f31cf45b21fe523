import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, stat, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { OakError } from '@oak/contracts';
import {
  caFingerprint, checkPublicKeyPem, createCa, fetchPinnedCa, fetchPresentedCa, generateKeyPair, issueCert, issueIdentity, loadOrCreateCa,
  pinnedHostTlsOptions, pinnedTlsOptions, splitPemChain, type Ca,
} from '../src/index.ts';

async function server(opts: tls.TlsOptions): Promise<{ port: number; close: () => Promise<void> }> {
  const s = tls.createServer(opts, (sock) => {
    sock.on('error', () => undefined);
    sock.end('hello');
  });
  s.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { port: (s.address() as net.AddressInfo).port, close: () => new Promise<void>((r) => s.close(() => r())) };
}

function connect(port: number, opts: tls.ConnectionOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ...opts }, () => {
      let data = '';
      s.on('data', (d: Buffer) => (data += d.toString()));
      s.on('end', () => resolve(data));
    });
    s.on('error', reject);
  });
}

let caA: Ca;
let caB: Ca;

test('createCa: a self-signed P-256 CA; caFingerprint is SHA-256 of its DER', async () => {
  caA = await createCa({ commonName: 'test CA A' });
  caB = await createCa();
  const x = new X509Certificate(caA.certPem);
  assert.equal(x.ca, true);
  assert.equal(x.subject, 'CN=test CA A');
  assert.equal(x.issuer, x.subject);
  assert.ok(x.verify(x.publicKey));
  assert.equal(x.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const fp = caFingerprint(caA.certPem);
  assert.match(fp, /^[0-9a-f]{64}$/);
  assert.equal(fp, x.fingerprint256.replace(/:/g, '').toLowerCase());
  assert.notEqual(fp, caFingerprint(caB.certPem));
});

test('issueCert: leaf with SANs, signed by the CA, not a CA; bad keys and names refused', async () => {
  const pair = generateKeyPair();
  const pem = await issueCert(caA, pair.publicKeyPem, { commonName: 'east', dnsNames: ['oak-cluster', 'east'], ipAddresses: ['10.0.0.7', '::1'], days: 2 });
  const x = new X509Certificate(pem);
  assert.equal(x.ca, false);
  assert.ok(x.verify(new X509Certificate(caA.certPem).publicKey));
  assert.ok(!x.verify(new X509Certificate(caB.certPem).publicKey));
  assert.match(x.subjectAltName ?? '', /DNS:oak-cluster/);
  assert.match(x.subjectAltName ?? '', /IP Address:10\.0\.0\.7/);
  assert.equal(x.checkHost('east'), 'east');
  const days = (Date.parse(x.validTo) - Date.now()) / 86_400_000;
  assert.ok(days > 1.9 && days <= 2, String(days));
  assert.equal(x.publicKey.export({ type: 'spki', format: 'pem' }).toString(), pair.publicKeyPem);
  await assert.rejects(issueCert(caA, 'not a key', { commonName: 'x' }), (e: unknown) => e instanceof OakError && e.code === 'OAK_VALIDATION');
  const { generateKeyPairSync } = await import('node:crypto');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  assert.throws(() => checkPublicKeyPem(rsa), OakError);
  await assert.rejects(issueCert(caA, pair.publicKeyPem, { commonName: 'x', dnsNames: ['a b'] }), OakError);
  await assert.rejects(issueCert(caA, pair.publicKeyPem, { commonName: 'x', ipAddresses: ['300.1.1.1'] }), OakError);
  const id = await issueIdentity(caA, { commonName: 'r', dnsNames: ['oak-root'] });
  assert.equal(splitPemChain(id.chainPem).length, 2);
  assert.equal(caFingerprint(splitPemChain(id.chainPem)[1] ?? ''), caFingerprint(caA.certPem));
});

test('loadOrCreateCa: created once, 0600 files in a 0700 dir, the same CA at the next load', async () => {
  const base = await mkdtemp(join(tmpdir(), 'oak-trust-'));
  try {
    const dir = join(base, 'data', 'tls');
    const a = await loadOrCreateCa(dir);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.equal((await stat(join(dir, 'ca.key'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'ca.crt'))).mode & 0o777, 0o600);
    const b = await loadOrCreateCa(dir);
    assert.equal(caFingerprint(b.certPem), caFingerprint(a.certPem));
    assert.equal(await readFile(join(dir, 'ca.key'), 'utf8'), a.keyPem);
    // a key that does not belong to the certificate is refused
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'ca.key'), caB.keyPem);
    await assert.rejects(loadOrCreateCa(dir), OakError);
    await rm(join(dir, 'ca.key'));
    await assert.rejects(loadOrCreateCa(dir), /missing/);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
});

test('fetchPinnedCa: the right fingerprint returns the CA; a wrong one, a lone leaf and a forged leaf are refused', async () => {
  const id = await issueIdentity(caA, { commonName: 'root', dnsNames: ['oak-root'] });
  const good = await server({ key: id.keyPem, cert: id.chainPem });
  const leafOnly = await server({ key: id.keyPem, cert: id.certPem });
  // an impostor presents the real CA certificate after its own leaf signed by another CA
  const fake = await issueIdentity(caB, { commonName: 'root', dnsNames: ['oak-root'] });
  const forged = await server({ key: fake.keyPem, cert: fake.certPem + caA.certPem });
  try {
    const fpA = caFingerprint(caA.certPem);
    const pem = await fetchPinnedCa('127.0.0.1', good.port, fpA.toUpperCase());
    assert.equal(caFingerprint(pem), fpA);
    const fpB = caFingerprint(caB.certPem);
    await assert.rejects(fetchPinnedCa('127.0.0.1', good.port, fpB), (e: unknown) => {
      assert.ok(e instanceof OakError);
      assert.equal(e.code, 'OAK_JOIN_TOKEN_INVALID');
      assert.equal(e.message, `the server at 127.0.0.1:${good.port} presents a CA with fingerprint ${fpA}, the join token expects ${fpB}`);
      assert.ok(e.hint);
      return true;
    });
    await assert.rejects(fetchPinnedCa('127.0.0.1', leafOnly.port, fpA), /presents a CA with fingerprint none/);
    // node only follows real issuers through the presented chain: the real CA after a foreign leaf is not found
    await assert.rejects(fetchPinnedCa('127.0.0.1', forged.port, fpA), (e: unknown) => e instanceof OakError && e.code === 'OAK_JOIN_TOKEN_INVALID');
  } finally {
    await Promise.all([good.close(), leafOnly.close(), forged.close()]);
  }
});

test('fetchPinnedCa: a closed port and a silent server answer OAK_UNAVAILABLE', async () => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const closedPort = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  await assert.rejects(fetchPinnedCa('127.0.0.1', closedPort, '0'.repeat(64)), (e: unknown) => e instanceof OakError && e.code === 'OAK_UNAVAILABLE' && /ECONNREFUSED/.test(e.message));
  const socks: net.Socket[] = [];
  const silent = net.createServer((s) => socks.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  try {
    const t0 = Date.now();
    await assert.rejects(fetchPinnedCa('127.0.0.1', (silent.address() as net.AddressInfo).port, '0'.repeat(64), { timeoutMs: 300 }), (e: unknown) => e instanceof OakError && e.code === 'OAK_UNAVAILABLE');
    assert.ok(Date.now() - t0 < 3000);
  } finally {
    for (const s of socks) s.destroy();
    await new Promise<void>((r) => silent.close(() => r()));
  }
});

test('pinnedTlsOptions: the CA and the service name are verified, not the dialled address', async () => {
  const rootId = await issueIdentity(caA, { commonName: 'root', dnsNames: ['oak-root'] });
  const clusterId = await issueIdentity(caA, { commonName: 'east', dnsNames: ['oak-cluster', 'east'] });
  const otherCa = await issueIdentity(caB, { commonName: 'root', dnsNames: ['oak-root'] });
  const root = await server({ key: rootId.keyPem, cert: rootId.chainPem });
  const cluster = await server({ key: clusterId.keyPem, cert: clusterId.chainPem });
  const impostor = await server({ key: otherCa.keyPem, cert: otherCa.chainPem });
  try {
    // dialled by address 127.0.0.1, which is in no SAN: accepted because the SAN has oak-root
    assert.equal(await connect(root.port, pinnedTlsOptions(caA.certPem, 'oak-root')), 'hello');
    assert.equal(await connect(cluster.port, pinnedTlsOptions(caA.certPem, 'oak-cluster')), 'hello');
    // a certificate from another CA
    await assert.rejects(connect(impostor.port, pinnedTlsOptions(caA.certPem, 'oak-root')), (e: NodeJS.ErrnoException) => /SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY/.test(String(e.code)));
    // the right CA but the wrong service: a cluster's certificate cannot pass for the root
    await assert.rejects(connect(cluster.port, pinnedTlsOptions(caA.certPem, 'oak-root')), (e: NodeJS.ErrnoException) => e.code === 'ERR_TLS_CERT_ALTNAME_INVALID');
    // the system's CAs are not trusted in addition
    await assert.rejects(connect(root.port, pinnedTlsOptions(caB.certPem, 'oak-root')));
  } finally {
    await Promise.all([root.close(), cluster.close(), impostor.close()]);
  }
});

test('fetchPresentedCa (trust on first use) and pinnedHostTlsOptions (dialled host or service name)', async () => {
  const id = await issueIdentity(caA, { commonName: 'api', dnsNames: ['api.example'], ipAddresses: ['127.0.0.1'] });
  const srv = await server({ key: id.keyPem, cert: id.chainPem });
  const svcOnly = await issueIdentity(caA, { commonName: 'r', dnsNames: ['oak-root'] });
  const srv2 = await server({ key: svcOnly.keyPem, cert: svcOnly.chainPem });
  const other = await issueIdentity(caA, { commonName: 'c', dnsNames: ['oak-cluster'] });
  const srv3 = await server({ key: other.keyPem, cert: other.chainPem });
  try {
    const p = await fetchPresentedCa('127.0.0.1', srv.port);
    assert.equal(p.fingerprint, caFingerprint(caA.certPem));
    assert.equal(caFingerprint(p.pem), p.fingerprint);
    assert.equal(await connect(srv.port, pinnedHostTlsOptions(p.pem, 'oak-root')), 'hello', 'by the dialled address');
    assert.equal(await connect(srv2.port, pinnedHostTlsOptions(p.pem, 'oak-root')), 'hello', 'by the service name');
    await assert.rejects(connect(srv3.port, pinnedHostTlsOptions(p.pem, 'oak-root')), (e: NodeJS.ErrnoException) => e.code === 'ERR_TLS_CERT_ALTNAME_INVALID');
    await assert.rejects(connect(srv.port, pinnedHostTlsOptions(caB.certPem, 'oak-root')));
  } finally {
    await Promise.all([srv.close(), srv2.close(), srv3.close()]);
  }
});
