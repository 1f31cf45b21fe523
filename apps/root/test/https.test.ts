/** The REST API over HTTPS: --tls auto (a certificate from the root CA) and --tls-cert/--tls-key (a CA made in the test). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { createCa, issueIdentity, pinnedHostTlsOptions, pinnedTlsOptions } from '@oak/trust';
import { configFromArgs } from '../src/main.ts';
import { startRoot } from '../src/server.ts';
import { rootTrust } from '../src/trust.ts';

const quiet = { host: '127.0.0.1', port: 0, httpsPort: 0, logLevel: 'silent', adminPassword: 'admin-secret-1', announce: () => {} } as const;

function get(url: string, tlsOpts: ConnectionOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ...tlsOpts, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

test('--tls auto: HTTPS with a root-CA certificate next to plain HTTP; other CAs refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'oak-https-'));
  const root = await startRoot({ ...quiet, dataDir: dir, tls: { mode: 'auto', sans: ['root.example', '10.9.8.7'] } });
  try {
    assert.ok(root.httpsUrl?.startsWith('https://127.0.0.1:'));
    const ca = (await rootTrust(root.ctx)).ca.certPem;
    const ok = await get(`${root.httpsUrl}/healthz`, pinnedHostTlsOptions(ca, 'oak-root'));
    assert.equal(ok.status, 200);
    assert.match(ok.body, /"status"/);
    // the API itself, over HTTPS
    const login = await new Promise<number>((resolve, reject) => {
      const req = https.request(`${root.httpsUrl}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, agent: false, ...pinnedTlsOptions(ca, 'oak-root') }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end(JSON.stringify({ username: 'Admin', password: 'admin-secret-1' }));
    });
    assert.equal(login, 200);
    assert.equal((await fetch(`${root.url}/healthz`)).status, 200, 'plain HTTP stays');
    const other = await createCa();
    await assert.rejects(get(`${root.httpsUrl}/healthz`, pinnedHostTlsOptions(other.certPem, 'oak-root')));
    await assert.rejects(fetch(`${root.httpsUrl}/healthz`), 'the system CAs do not know the root CA');
  } finally {
    await root.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--tls-cert/--tls-key: the given certificate is served', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'oak-https-files-'));
  const ca = await createCa({ commonName: 'site CA' });
  const id = await issueIdentity(ca, { commonName: 'api.example', dnsNames: ['api.example', 'localhost'], ipAddresses: ['127.0.0.1'] });
  writeFileSync(join(dir, 'cert.pem'), id.chainPem);
  writeFileSync(join(dir, 'key.pem'), id.keyPem, { mode: 0o600 });
  const root = await startRoot({ ...quiet, dataDir: join(dir, 'data'), tls: { mode: 'files', certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') } });
  try {
    const r = await get(`${root.httpsUrl}/healthz`, { ca: ca.certPem });
    assert.equal(r.status, 200);
    await assert.rejects(get(`${root.httpsUrl}/healthz`, { ca: (await rootTrust(root.ctx)).ca.certPem }), 'not the root CA this time');
  } finally {
    await root.close();
  }
  await assert.rejects(startRoot({ ...quiet, dataDir: join(dir, 'data2'), tls: { mode: 'files', certFile: join(dir, 'missing.pem'), keyFile: join(dir, 'key.pem') } }), /cannot read the TLS certificate/);
  rmSync(dir, { recursive: true, force: true });
});

test('oak-root flags: --tls auto, --tls-cert with --tls-key, --https-port; bad combinations refused', () => {
  const cfg = configFromArgs(['--tls', 'auto', '--tls-san', 'a.example, 10.0.0.1', '--https-port', '8443'], {});
  assert.ok(cfg !== 'help');
  assert.deepEqual(cfg.tls, { mode: 'auto', sans: ['a.example', '10.0.0.1'] });
  assert.equal(cfg.httpsPort, 8443);
  const files = configFromArgs([], { OAK_TLS_CERT: '/c.pem', OAK_TLS_KEY: '/k.pem' });
  assert.ok(files !== 'help');
  assert.deepEqual(files.tls, { mode: 'files', certFile: '/c.pem', keyFile: '/k.pem' });
  assert.equal(files.httpsPort, 10443);
  const none = configFromArgs([], {});
  assert.ok(none !== 'help' && none.tls === undefined);
  assert.throws(() => configFromArgs(['--tls', 'yes'], {}), /--tls takes 'auto'/);
  assert.throws(() => configFromArgs(['--tls-cert', '/c.pem'], {}), /go together/);
  assert.throws(() => configFromArgs(['--tls', 'auto', '--tls-cert', '/c', '--tls-key', '/k'], {}), /exclude/);
  assert.throws(() => configFromArgs(['--tls', 'auto', '--https-port', 'x'], {}), /--https-port/);
});
