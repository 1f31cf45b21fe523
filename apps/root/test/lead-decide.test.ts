/**
 * The lease decisions (lead/decide.ts) with a fake clock: who leads, when a leader steps down
 * (another holder at once; a store error or a hanging renewal before the ttl can run out), and
 * the lease loop (lead/leader.ts) over an in-memory lease with a real timer but short times.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LeaseState } from '@oak/store';
import { LeaseDecider, parseLeaderInfo } from '../src/lead/decide.ts';
import { startLeaseLoop } from '../src/lead/leader.ts';

const TTL = 3000;
const held = (holder: string, info: string | null = null): LeaseState => ({ name: 'reconciler', holder, info, expires_at: '', held: true });
const other = (holder: string, info: string | null = null): LeaseState => ({ name: 'reconciler', holder, info, expires_at: '', held: false });

describe('lease decider', () => {
  test('the holder leads; a second success changes nothing; the leader info is its own', () => {
    const d = new LeaseDecider('me', { ttlMs: TTL });
    assert.equal(d.role, undefined);
    assert.deepEqual(d.onResult({ ok: true, sentAt: 0, lease: held('me', '{"api_url":"http://a:1","link_url":"a:2"}') }, 10), { kind: 'lead' });
    assert.equal(d.role, 'leader');
    assert.deepEqual(d.leader, { holder: 'me', api_url: 'http://a:1', link_url: 'a:2' });
    assert.equal(d.onResult({ ok: true, sentAt: 1000, lease: held('me') }, 1010), null);
    assert.equal(d.deadline(), 1000 + TTL - 1000);
  });

  test('someone else holds it: follow with its info; told again only when the leader changes', () => {
    const d = new LeaseDecider('me', { ttlMs: TTL });
    const t = d.onResult({ ok: true, sentAt: 0, lease: other('x', '{"api_url":"http://x:1"}') }, 5);
    assert.equal(t?.kind, 'follow');
    assert.deepEqual(t?.kind === 'follow' ? t.leader : undefined, { holder: 'x', api_url: 'http://x:1' });
    assert.equal(d.onResult({ ok: true, sentAt: 1000, lease: other('x', '{"api_url":"http://x:1"}') }, 1005), null);
    const t2 = d.onResult({ ok: true, sentAt: 2000, lease: other('y', null) }, 2005);
    assert.equal(t2?.kind, 'follow');
    assert.equal(d.leader?.holder, 'y');
  });

  test('a leader that finds another holder steps down at once', () => {
    const d = new LeaseDecider('me', { ttlMs: TTL });
    d.onResult({ ok: true, sentAt: 0, lease: held('me') }, 1);
    const t = d.onResult({ ok: true, sentAt: 1000, lease: other('x') }, 1001);
    assert.equal(t?.kind, 'follow');
    assert.match(t?.kind === 'follow' ? t.reason : '', /another root holds the lease \(x\)/);
    assert.equal(d.role, 'follower');
    assert.equal(d.deadline(), undefined);
  });

  test('a store error: the leader keeps leading while the lease is sure to be its own, and steps down before the ttl runs out', () => {
    const d = new LeaseDecider('me', { ttlMs: TTL });
    d.onResult({ ok: true, sentAt: 0, lease: held('me') }, 5);
    assert.equal(d.onResult({ ok: false, sentAt: 1000, error: 'connection refused' }, 1005), null, 'one failure: still ours for 2 s');
    const t = d.onResult({ ok: false, sentAt: 2000, error: 'connection refused' }, 2000);
    assert.equal(t?.kind, 'follow', 'the second failure in a row: the last renewal is ttl - 1 s old');
    assert.match(t?.kind === 'follow' ? t.reason : '', /could not be renewed: connection refused/);
  });

  test('a hanging renewal: the clock steps the leader down at ttl - margin after the last success', () => {
    const d = new LeaseDecider('me', { ttlMs: TTL, marginMs: 1000 });
    d.onResult({ ok: true, sentAt: 100, lease: held('me') }, 120);
    assert.equal(d.onClock(2099), null);
    const t = d.onClock(2100);
    assert.equal(t?.kind, 'follow');
    assert.equal(d.onClock(5000), null, 'told once');
    // the renewal that hung answers at last, too late to lead on
    assert.equal(d.onResult({ ok: true, sentAt: 1100, lease: held('me') }, 3200), null);
    assert.equal(d.role, 'follower');
    // the next one is fresh: lead again
    assert.deepEqual(d.onResult({ ok: true, sentAt: 3300, lease: held('me') }, 3310), { kind: 'lead' });
  });

  test('the first answer decides: an error or a late answer makes a follower', () => {
    const a = new LeaseDecider('me', { ttlMs: TTL });
    assert.equal(a.onResult({ ok: false, sentAt: 0, error: 'down' }, 1)?.kind, 'follow');
    assert.equal(a.onResult({ ok: false, sentAt: 1000, error: 'down' }, 1001), null, 'a follower is not told again');
    const b = new LeaseDecider('me', { ttlMs: TTL });
    assert.equal(b.onResult({ ok: true, sentAt: 0, lease: held('me') }, 2500)?.kind, 'follow');
  });

  test('released: a leader becomes a follower; the margin must be shorter than the ttl', () => {
    const d = new LeaseDecider('me', { ttlMs: TTL });
    d.onResult({ ok: true, sentAt: 0, lease: held('me') }, 1);
    assert.equal(d.released()?.kind, 'follow');
    assert.equal(d.role, 'follower');
    assert.throws(() => new LeaseDecider('me', { ttlMs: 1000, marginMs: 1000 }));
  });

  test('lease info: junk, huge or wrongly typed fields are left out, never thrown', () => {
    assert.deepEqual(parseLeaderInfo('h', 'not json'), { holder: 'h' });
    assert.deepEqual(parseLeaderInfo('h', null), { holder: 'h' });
    assert.deepEqual(parseLeaderInfo('h', '[1,2]'), { holder: 'h' });
    assert.deepEqual(parseLeaderInfo('h', JSON.stringify({ api_url: 5, link_url: 'x'.repeat(5000), started_at: 'now' })), { holder: 'h', started_at: 'now' });
    assert.deepEqual(parseLeaderInfo('h', 'x'.repeat(10_000)), { holder: 'h' });
  });
});

/** An in-memory lease with the semantics of Store.tryLease (its own clock). */
function memoryLease(now: () => number) {
  let row: { holder: string; info: string | null; expires: number } | undefined;
  let failing = false;
  let hang: string | undefined;
  return {
    set failing(v: boolean) {
      failing = v;
    },
    /** this holder's calls never answer */
    set hang(v: string | undefined) {
      hang = v;
    },
    get holder() {
      return row && row.expires > now() ? row.holder : undefined;
    },
    async tryLease(_name: string, holder: string, ttlMs: number, info: string | null = null): Promise<LeaseState> {
      if (hang === holder) await new Promise(() => undefined);
      if (failing) throw new Error('store down');
      if (!row || row.holder === holder || row.expires <= now()) row = { holder, info, expires: now() + ttlMs };
      return { name: 'reconciler', holder: row.holder, info: row.info, expires_at: new Date(row.expires).toISOString(), held: row.holder === holder };
    },
    async releaseLease(_name: string, holder: string): Promise<void> {
      if (row?.holder === holder) row = undefined;
    },
  };
}

const quiet = { info() {}, warn() {}, error() {} };

describe('lease loop (timer shell)', () => {
  test('two loops: one leads; the leader releasing on close hands over within one renewal', async () => {
    const lease = memoryLease(Date.now);
    const roles: string[] = [];
    const mk = (id: string) =>
      startLeaseLoop({ store: lease, holder: id, ttlMs: 600, renewMs: 50, marginMs: 200, info: JSON.stringify({ api_url: id }), log: quiet, onLead: () => roles.push(`${id}:lead`), onFollow: () => roles.push(`${id}:follow`) });
    const a = mk('a');
    await a.ready;
    const b = mk('b');
    await b.ready;
    assert.equal(a.role, 'leader');
    assert.equal(b.role, 'follower');
    assert.equal(b.leader?.api_url, 'a');
    const t0 = Date.now();
    await a.close();
    while ((b.role as string) !== 'leader') await new Promise((r) => setTimeout(r, 10));
    assert.ok(Date.now() - t0 < 400, `handed over in ${Date.now() - t0} ms`);
    assert.deepEqual(roles, ['a:lead', 'b:follow', 'b:lead']);
    await b.close();
  });

  test('a leader whose renewals hang steps down before its lease expires; the other takes over after it', async () => {
    const lease = memoryLease(Date.now);
    let aLost = 0;
    let bLead = 0;
    const a = startLeaseLoop({ store: lease, holder: 'a', ttlMs: 600, renewMs: 50, marginMs: 200, info: '{}', log: quiet, onLead() {}, onFollow: () => (aLost = Date.now()) });
    await a.ready;
    const b = startLeaseLoop({ store: lease, holder: 'b', ttlMs: 600, renewMs: 50, marginMs: 200, info: '{}', log: quiet, onLead: () => (bLead = Date.now()), onFollow() {} });
    await b.ready;
    assert.equal(a.role, 'leader');
    lease.hang = 'a';
    while (bLead === 0) await new Promise((r) => setTimeout(r, 10));
    assert.ok(aLost > 0 && aLost < bLead, `a stepped down (${aLost}) before b led (${bLead})`);
    assert.equal(a.role, 'follower');
    assert.equal(lease.holder, 'b');
    await b.close();
    void a.stop();
  });

  test('a store error while leading: step down at ttl - margin, never after the lease could pass', async () => {
    const lease = memoryLease(Date.now);
    let leadAt = 0;
    let downAt = 0;
    const a = startLeaseLoop({ store: lease, holder: 'a', ttlMs: 600, renewMs: 50, marginMs: 200, info: '{}', log: quiet, onLead: () => (leadAt = Date.now()), onFollow: () => (downAt = Date.now()) });
    await a.ready;
    assert.ok(leadAt > 0);
    const failFrom = Date.now();
    lease.failing = true;
    while (downAt === 0) await new Promise((r) => setTimeout(r, 10));
    const after = downAt - failFrom;
    assert.ok(after <= 450, `stepped down ${after} ms after the store failed (lease ttl 600)`);
    lease.failing = false;
    while (a.role !== 'leader') await new Promise((r) => setTimeout(r, 10));
    await a.close();
    assert.equal(lease.holder, undefined, 'released');
  });
});

describe('leadFromLink (what oak-root passes on PostgreSQL)', () => {
  test('the follower redirects on the link port; the leader advertises the given or a dialable address', async () => {
    const { leadFromLink } = await import('../src/lead/index.ts');
    const { hostname } = await import('node:os');
    assert.deepEqual(leadFromLink({ host: '10.0.0.5', linkPort: 50052 }), { linkUrl: '10.0.0.5:50052', redirectListen: { host: '10.0.0.5', port: 50052 } });
    assert.equal(leadFromLink({ host: '0.0.0.0', linkPort: 50052 }).linkUrl, `${hostname()}:50052`);
    assert.equal(leadFromLink({ host: 'fd00::1', linkPort: 1 }).linkUrl, '[fd00::1]:1');
    assert.deepEqual(leadFromLink({ host: '0.0.0.0', linkPort: 50052, advertiseLink: 'root-a.example:50052', advertiseApi: 'https://root-a.example:10443' }), {
      linkUrl: 'root-a.example:50052',
      redirectListen: { host: '0.0.0.0', port: 50052 },
      apiUrl: 'https://root-a.example:10443',
    });
  });
});

describe('limitedWarn', () => {
  test('the first line, then one per interval with the count left out', async () => {
    const { limitedWarn } = await import('../src/lead/log-limit.ts');
    let t = 0;
    const out: object[] = [];
    const warn = limitedWarn({ info() {}, warn: (o: object) => void out.push(o), error() {} }, 1000, () => t);
    for (let k = 0; k < 50; k++) warn({ k }, 'x');
    t = 1000;
    warn({ k: 50 }, 'x');
    assert.deepEqual(out, [{ k: 0 }, { k: 50, suppressed: 49 }]);
  });
});
