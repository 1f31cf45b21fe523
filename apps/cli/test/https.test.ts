/** The CLI against an HTTPS root: trust on first use at login (fingerprint printed, CA kept), --ca-file, a changed CA refused. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRoot, rootTrust, type RootHandle } from '@oak/root';
import { createCa } from '@oak/trust';
import { ADMIN_PASSWORD, CliHome } from './helpers.ts';

describe('oak with an https root', () => {
  let root: RootHandle;
  let dir: string;
  let caPem: string;
  let caHash: string;
  const homes: CliHome[] = [];
  const home = (): CliHome => {
    const h = new CliHome();
    homes.push(h);
    return h;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'oak-cli-https-'));
    root = await startRoot({ host: '127.0.0.1', port: 0, httpsPort: 0, dataDir: dir, adminPassword: ADMIN_PASSWORD, logLevel: 'silent', announce: () => undefined, tls: { mode: 'auto' } });
    const t = await rootTrust(root.ctx);
    caPem = t.ca.certPem;
    caHash = t.caHash;
  });
  after(async () => {
    await root.close();
    for (const h of homes) h.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('first login pins the CA (fingerprint printed), later commands verify against it', async () => {
    const h = home();
    const url = root.httpsUrl ?? '';
    const r = await h.run(['--root', url, 'login', '-u', 'Admin', '--password-stdin'], { stdin: `${ADMIN_PASSWORD}\n` });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`trusting the CA of ${url.replace(/\./g, '\\.')} on first use: sha256 ${caHash}`));
    const cfg = JSON.parse(readFileSync(h.configPath, 'utf8')) as { ca_pem?: string; ca_for?: string; root_url?: string };
    assert.equal(cfg.ca_pem?.trim(), caPem.trim());
    assert.equal(cfg.ca_for, url);
    const ls = await h.run(['token', 'ls', '--json']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.doesNotMatch(ls.stderr, /trusting/);
    // a second login says nothing more about trust
    const again = await h.run(['login', '-u', 'Admin', '--password-stdin'], { stdin: `${ADMIN_PASSWORD}\n` });
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /trusting/);

    // the root now presents another CA (an impostor on that address): refused, nothing sent
    const other = await createCa();
    writeFileSync(h.configPath, JSON.stringify({ ...cfg, ca_pem: other.certPem }));
    const refused = await h.run(['token', 'ls']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /unknown CA|certificate/i);
  });

  it('--ca-file: no trust-on-first-use; a wrong CA file is refused', async () => {
    const h = home();
    const good = join(dir, 'root-ca.pem');
    writeFileSync(good, caPem);
    const r = await h.run(['--root', root.httpsUrl ?? '', '--ca-file', good, 'login', '-u', 'Admin', '--password-stdin'], { stdin: `${ADMIN_PASSWORD}\n` });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /trusting/);
    assert.equal((await h.run(['token', 'ls'])).code, 0, 'the given CA was kept');
    const bad = join(dir, 'other-ca.pem');
    writeFileSync(bad, (await createCa()).certPem);
    const h2 = home();
    const r2 = await h2.run(['--root', root.httpsUrl ?? '', '--ca-file', bad, 'login', '-u', 'Admin', '--password-stdin'], { stdin: `${ADMIN_PASSWORD}\n` });
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /unknown CA|certificate/i);
    const none = await h2.run(['--root', root.httpsUrl ?? '', '--ca-file', join(dir, 'missing.pem'), 'token', 'ls']);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /cannot read the CA file/);
  });

  it('plain HTTP on the other port keeps working without any CA', async () => {
    const h = home();
    const r = await h.run(['--root', root.url, 'login', '-u', 'Admin', '--password-stdin'], { stdin: `${ADMIN_PASSWORD}\n` });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(readFileSync(h.configPath, 'utf8')) as { ca_pem?: string }).ca_pem, undefined);
  });
});
