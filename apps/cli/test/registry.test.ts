/** `oak registry login|ls|logout` with the real binary against a real root. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN_PASSWORD, CliHome, startTestRoot, type TestRoot } from './helpers.ts';

const PW = 'cli-registry-pw-7c1e';

describe('oak registry', () => {
  let root: TestRoot;
  const home = new CliHome();
  const run = (args: string[], opts: { stdin?: string; env?: Record<string, string> } = {}) => home.run(args, { ...opts, env: { OAK_ROOT_URL: root.url, ...opts.env } });

  before(async () => {
    root = await startTestRoot();
    const r = await run(['login', '-u', 'Admin', '--password-stdin'], { stdin: `${ADMIN_PASSWORD}\n` });
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await root.close();
    home.cleanup();
  });

  it('login with --password-stdin stores it (a URL-like host is normalised); ls shows host and user, never the password', async () => {
    const r = await run(['registry', 'login', 'https://Registry.Example.com/', '-u', 'ci', '--password-stdin'], { stdin: `${PW}\n` });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /login to registry\.example\.com stored as ci/);
    const admin = await root.root.ctx.store.getUserByName('Admin');
    const row = await root.root.ctx.store.getRegistryCredential(admin!.organization_id, 'registry.example.com');
    assert.equal(row?.username, 'ci');
    assert.ok(!row.secret.includes(PW));
    const ls = await run(['registry', 'ls']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /HOST\s+USERNAME\s+UPDATED\s+CREATED/);
    assert.match(ls.stdout, /registry\.example\.com\s+ci\b/);
    const j = await run(['registry', 'ls', '--json']);
    const list = JSON.parse(j.stdout) as Record<string, unknown>[];
    assert.equal(list.length, 1);
    assert.ok(!('password' in list[0]!));
    for (const out of [r, ls, j]) assert.ok(!out.stdout.includes(PW) && !out.stderr.includes(PW));
  });

  it('bad input fails clearly before anything is sent; no password without a terminal is a usage error', async () => {
    const bad = await run(['registry', 'login', 'bad host!', '-u', 'x', '--password-stdin'], { stdin: 'p\n' });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /not a registry host/);
    const colon = await run(['registry', 'login', '127.0.0.1:5000', '-u', 'a:b', '--password-stdin'], { stdin: 'p\n' });
    assert.notEqual(colon.code, 0);
    assert.match(colon.stderr, /must not contain ":"/);
    const empty = await run(['registry', 'login', '127.0.0.1:5000', '-u', 'a', '--password-stdin'], { stdin: '\n' });
    assert.notEqual(empty.code, 0);
    assert.match(empty.stderr, /password must have/);
    const none = await run(['registry', 'login', '127.0.0.1:5000', '-u', 'a']);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /--password-stdin/);
    const huge = await run(['registry', 'login', '127.0.0.1:5000', '-u', 'a', '--password-stdin'], { stdin: 'x'.repeat(9000) });
    assert.notEqual(huge.code, 0);
    assert.match(huge.stderr, /at most 8192/);
    const ls = await run(['registry', 'ls', '--json']);
    assert.equal((JSON.parse(ls.stdout) as unknown[]).length, 1, 'nothing more stored');
  });

  it('logout removes it; a second logout says it is not there', async () => {
    const r = await run(['registry', 'logout', 'registry.example.com']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /removed:\s+registry\.example\.com/);
    const again = await run(['registry', 'logout', 'registry.example.com']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /not found|no registry login|registry login/i);
    const ls = await run(['registry', 'ls']);
    assert.match(ls.stdout, /no registry logins/);
  });
});
