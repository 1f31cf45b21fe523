/** `oak token create|ls|revoke` with the real binary against a real root. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseJoinToken } from '@oak/contracts';
import { ADMIN_PASSWORD, CliHome, startTestRoot, type TestRoot } from './helpers.ts';

describe('oak token', () => {
  let root: TestRoot;
  const home = new CliHome();
  const run = (args: string[], opts: { stdin?: string } = {}) => home.run(args, { ...opts, env: { OAK_ROOT_URL: root.url } });

  before(async () => {
    root = await startTestRoot();
    const r = await run(['login', '-u', 'Admin', '--password-stdin'], { stdin: `${ADMIN_PASSWORD}\n` });
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await root.close();
    home.cleanup();
  });

  it('create cluster: the token once, with the command that uses it; --json', async () => {
    const r = await run(['token', 'create', 'cluster', '--name', 'east', '--ttl', '24h']);
    assert.equal(r.code, 0, r.stderr);
    const first = r.stdout.split('\n')[0] ?? '';
    const t = parseJoinToken(first, 'cluster');
    assert.match(r.stdout, new RegExp(`OAK_JOIN_TOKEN=${first.replace(/\./g, '\\.')} SYSTEM_MANAGER_URL=.* CLUSTER_NAME=east oak-cluster`));
    assert.match(r.stdout, /not shown again/);
    const row = await root.root.ctx.store.getJoinToken(t.id);
    assert.equal(row?.name, 'east');
    const left = Date.parse(row?.expires_at ?? '') - Date.now();
    assert.ok(left > 23.9 * 3600_000 && left <= 24 * 3600_000);

    const j = await run(['token', 'create', 'worker', '--cluster', 'east', '--json']);
    assert.equal(j.code, 0, j.stderr);
    const doc = JSON.parse(j.stdout) as { token: string; kind: string; cluster: string; ca_sha256: string };
    assert.equal(doc.kind, 'worker');
    assert.equal(doc.cluster, 'east');
    assert.equal(parseJoinToken(doc.token, 'worker').caHash, doc.ca_sha256);
    assert.equal(doc.ca_sha256, t.caHash);
  });

  it('ls: a table and --json, without secrets', async () => {
    const r = await run(['token', 'ls']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /ID\s+KIND\s+CLUSTER\s+STATE\s+EXPIRES\s+USES/);
    assert.ok(lines.some((l) => /\bcluster\s+east\s+active\s+in 2[34]h/.test(l)), r.stdout);
    assert.ok(lines.some((l) => /\bworker\s+east\s+active\s+never\s+0\b/.test(l)), r.stdout);
    assert.doesNotMatch(r.stdout, /oak1\./);
    const j = await run(['token', 'ls', '--json']);
    const list = JSON.parse(j.stdout) as { id: string; token?: string }[];
    assert.equal(list.length, 2);
    assert.ok(list.every((x) => x.token === undefined));
  });

  it('revoke: by id or by the whole token; ls hides it unless --all; unknown ids and bad input fail clearly', async () => {
    const created = await run(['token', 'create', 'worker', '--cluster', 'west']);
    const text = created.stdout.split('\n')[0] ?? '';
    const id = parseJoinToken(text).id;
    const r = await run(['token', 'revoke', text]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`revoked:\\s+${id}`));
    assert.equal((await root.root.ctx.store.getJoinToken(id))?.revoked_at !== null, true);
    assert.doesNotMatch((await run(['token', 'ls'])).stdout, new RegExp(id));
    assert.match((await run(['token', 'ls', '--all'])).stdout, new RegExp(`${id}\\s+worker\\s+west\\s+revoked`));

    const missing = await run(['token', 'revoke', 'zzzzzzzz']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /join token "zzzzzzzz" does not exist/);
    const bad = await run(['token', 'revoke', '../x']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /not a token id/);
    const noCluster = await run(['token', 'create', 'worker']);
    assert.equal(noCluster.code, 2);
    assert.match(noCluster.stderr, /--cluster/);
    const shortTtl = await run(['token', 'create', 'cluster', '--ttl', '5s']);
    assert.equal(shortTtl.code, 2);
    assert.match(shortTtl.stderr, /shorter than a minute/);
    const badName = await run(['token', 'create', 'cluster', '--name', 'no spaces']);
    assert.equal(badName.code, 1);
    assert.match(badName.stderr, /name/);
  });

  it('a user without the role is refused', async () => {
    const org = await root.root.ctx.store.createOrganization('devs');
    const { hashPassword } = await import('@oak/root');
    await root.root.ctx.store.createUser({ name: 'dev', password_hash: await hashPassword('dev-password-1'), roles: ['Application_Provider'], organization_id: org.id, email: null });
    const other = new CliHome();
    try {
      const env = { OAK_ROOT_URL: root.url };
      assert.equal((await other.run(['login', '-u', 'dev', '--password-stdin'], { stdin: 'dev-password-1\n', env })).code, 0);
      const r = await other.run(['token', 'create', 'cluster', '--name', 'x'], { env });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /Infrastructure_Provider/);
      assert.equal((await other.run(['token', 'ls'], { env })).code, 1);
    } finally {
      other.cleanup();
    }
  });
});
