/**
 * `oak logout` (revokes on the root), `oak user passwd` and `oak audit`: the real binary against
 * a real root on a free port.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ADMIN_PASSWORD, CliHome, closedPort, example, startTestRoot, type TestRoot } from './helpers.ts';

const NO_STACK = /\n\s+at /;

async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('accounts through oak', () => {
  let root: TestRoot;
  const homes: CliHome[] = [];
  const home = (): CliHome => {
    const h = new CliHome();
    homes.push(h);
    return h;
  };
  const cfg = (h: CliHome): Record<string, string> => JSON.parse(readFileSync(h.configPath, 'utf8')) as Record<string, string>;
  let admin: CliHome;
  const run = (h: CliHome, args: string[], opts: { stdin?: string; env?: Record<string, string | undefined> } = {}) =>
    h.run(args, { ...opts, env: { OAK_ROOT_URL: root.url, ...opts.env } });
  const refresh = (rt: string) =>
    fetch(`${root.url}/api/auth/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token: rt }) });

  before(async () => {
    root = await startTestRoot();
    admin = home();
    const r = await run(admin, ['login', '-u', 'Admin', '--password-stdin'], { stdin: ADMIN_PASSWORD });
    assert.equal(r.code, 0, r.stderr);
    const tok = cfg(admin).token!;
    for (const name of ['paula', 'quinn']) {
      const res = await fetch(`${root.url}/api/user/`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${tok}` },
        body: JSON.stringify({ name, password: 'first-password-1' }),
      });
      assert.equal(res.status, 201);
    }
  });
  after(async () => {
    await root.close();
    for (const h of homes) h.cleanup();
  });

  it('logout revokes the session on the root: the old refresh token gets 401', async () => {
    const h = home();
    assert.equal((await run(h, ['login', '-u', 'paula', '--password-stdin'], { stdin: 'first-password-1' })).code, 0);
    const old = cfg(h);
    assert.equal((await refresh(old.refresh_token!)).status, 200);
    const out = await run(h, ['logout']);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /logged out: every session of paula on .* is revoked/);
    assert.equal(cfg(h).token, undefined);
    assert.equal(cfg(h).refresh_token, undefined);
    assert.equal((await refresh(old.refresh_token!)).status, 401);
    const again = await run(h, ['logout', '-o', 'json']);
    assert.equal(again.code, 0);
    assert.deepEqual(JSON.parse(again.stdout), { logged_out: true, revoked: false });
  });

  it('logout with the root unreachable: a warning, the tokens are forgotten anyway', async () => {
    const h = home();
    assert.equal((await run(h, ['login', '-u', 'paula', '--password-stdin'], { stdin: 'first-password-1' })).code, 0);
    const rt = cfg(h).refresh_token!;
    const r = await h.run(['logout'], { env: { OAK_ROOT_URL: `http://127.0.0.1:${await closedPort()}` } });
    assert.equal(r.code, 0);
    assert.match(r.stderr, /warning: could not log out on the root .*stay valid until they expire/);
    assert.equal(cfg(h).refresh_token, undefined);
    assert.equal((await refresh(rt)).status, 200, 'the root never heard of it');
  });

  it('user passwd: own password with the current one; logged in again; old sessions and password dead', async () => {
    const h = home();
    const other = home();
    for (const x of await Promise.all([h, other].map((x) => run(x, ['login', '-u', 'quinn', '--password-stdin'], { stdin: 'first-password-1' })))) assert.equal(x.code, 0, x.stderr);
    const otherRt = cfg(other).refresh_token!;

    const [short, wrong] = await Promise.all([
      run(h, ['user', 'passwd', '--password-stdin'], { stdin: 'first-password-1\nshort\n' }),
      run(h, ['user', 'passwd', '--password-stdin'], { stdin: 'not-the-password\nsecond-password-2\n' }),
    ]);
    assert.equal(short.code, 2);
    assert.match(short.stderr, /at least 8 characters/);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /old_password is missing or wrong/);
    assert.doesNotMatch(wrong.stderr, NO_STACK);

    const ok = await run(h, ['user', 'passwd', '--password-stdin'], { stdin: 'first-password-1\nsecond-password-2\n' });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /password of quinn changed/);
    const [ls, otherRefresh, oldPw] = await Promise.all([run(h, ['app', 'ls']), refresh(otherRt), run(home(), ['login', '-u', 'quinn', '--password-stdin'], { stdin: 'first-password-1' })]);
    assert.equal(ls.code, 0, 'this session goes on with new tokens');
    assert.equal(otherRefresh.status, 401, 'the other session is revoked');
    assert.equal(oldPw.code, 1);
    assert.ok(!readFileSync(h.configPath, 'utf8').includes('second-password-2'), 'no password in the config file');

    // an Admin resets it without the old one; env variables instead of stdin
    const reset = await run(admin, ['user', 'passwd', 'quinn', '-o', 'json'], { env: { OAK_NEW_PASSWORD: 'third-password-3' } });
    assert.equal(reset.code, 0, reset.stderr);
    assert.equal((JSON.parse(reset.stdout) as { changed: boolean }).changed, true);
    // quinn may not change paula's
    const [third, adminLs, nope] = await Promise.all([
      run(home(), ['login', '-u', 'quinn', '--password-stdin'], { stdin: 'third-password-3' }),
      run(admin, ['app', 'ls']),
      run(h, ['user', 'passwd', 'paula', '--password-stdin'], { stdin: 'hijacked-password' }),
    ]);
    assert.equal(third.code, 0, third.stderr);
    assert.equal(adminLs.code, 0, "the Admin's own session is untouched");
    assert.equal(nope.code, 1);
  });

  it('oak events stops (exit 1) when the session is revoked by a logout elsewhere', async () => {
    const h = home();
    const other = home();
    for (const x of await Promise.all([h, other].map((x) => run(x, ['login', '-u', 'paula', '--password-stdin'], { stdin: 'first-password-1' })))) assert.equal(x.code, 0, x.stderr);
    const ev = h.start(['events'], { env: { OAK_ROOT_URL: root.url } });
    await until(() => root.root.ctx.streams!.count() > 0);
    assert.equal((await run(other, ['logout'])).code, 0);
    const r = await ev.done;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the root closed the event stream \(logged out\)/);
    assert.match(r.stderr, /revoked/);
    assert.match(r.stderr, /oak login/);
  });

  it('audit: a table and --json; an application created shows who, what, when and from where; Admin only', async () => {
    const create = await run(admin, ['app', 'create', '-f', example('web-server.json')]);
    assert.equal(create.code, 0, create.stderr);
    const q = home();
    // the reads, the usage errors and paula's login at once (the reads look for no login of paula)
    const [t, j, failedOut, logoutsOut, everythingOut, limit0, since, qLogin] = await Promise.all([
      run(admin, ['audit', '--since', '1h']),
      run(admin, ['audit', '--json', '--action', 'POST /api/application']),
      run(admin, ['audit', '-o', 'json', '--action', 'login_failed', '--all']),
      run(admin, ['audit', '--json', '--user', 'paula', '--action', 'logout']),
      run(admin, ['audit', '--json', '--all']),
      run(admin, ['audit', '--limit', '0']),
      run(admin, ['audit', '--since', 'last tuesday']),
      run(q, ['login', '-u', 'paula', '--password-stdin'], { stdin: 'first-password-1' }),
    ]);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /TIME\s+USER\s+ACTION\s+TARGET\s+STATUS\s+FROM/);
    assert.match(t.stdout, /Admin\s+POST \/api\/application\/\s+[0-9a-f]{24}\s+200\s+127\.0\.0\.1/);
    assert.equal(j.code, 0, j.stderr);
    const entries = JSON.parse(j.stdout) as { user_name: string; action: string; at: string; address: string; target: string }[];
    assert.ok(entries.length >= 1);
    assert.ok(entries.every((e) => e.action === 'POST /api/application/' && e.user_name === 'Admin' && e.address === '127.0.0.1'));
    const failed = JSON.parse(failedOut.stdout) as { user_name: string }[];
    assert.ok(failed.some((e) => e.user_name === 'quinn'), 'the failed login of the old password is there');
    const logouts = JSON.parse(logoutsOut.stdout) as { user_name: string; action: string }[];
    assert.equal(logouts.length, 2, 'the two logouts that reached the root');
    assert.ok(logouts.every((e) => e.user_name === 'paula' && e.action === 'auth.logout'));
    const everything = everythingOut.stdout;
    for (const secret of ['first-password-1', 'second-password-2', 'third-password-3', ADMIN_PASSWORD]) assert.ok(!everything.includes(secret), secret);

    assert.equal(limit0.code, 2);
    assert.equal(since.code, 2);
    assert.equal(qLogin.code, 0, qLogin.stderr);
    const denied = await run(q, ['audit']);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /only an Admin may read the audit trail/);
  });

  it('login after too many failures: the root says how long to wait, exit 1', async () => {
    const h = home();
    for (const r of await Promise.all(Array.from({ length: 5 }, () => run(h, ['login', '-u', 'nobody-here', '--password-stdin'], { stdin: 'wrong-password' })))) assert.equal(r.code, 1, r.stderr);
    const r = await run(h, ['login', '-u', 'nobody-here', '--password-stdin'], { stdin: 'wrong-password' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^oak: too many failed logins: try again later\n {2}hint: wait \d+ s/);
    assert.doesNotMatch(r.stderr, NO_STACK);
  });
});
