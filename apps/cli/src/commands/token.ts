/** `oak token create|ls|revoke`: join tokens for clusters and workers (docs/security.md). */
import type { Command } from 'commander';
import { JOIN_TOKEN_ID_PATTERN } from '@oak/contracts';
import { parseDuration, session, type Session } from '../context.ts';
import { UsageError } from '../errors.ts';
import { age, dash, emit, keyValues, paint, table } from '../output.ts';

export interface TokenDoc {
  id: string;
  kind: 'cluster' | 'worker';
  name: string | null;
  cluster: string | null;
  state: 'active' | 'expired' | 'revoked';
  created_by: string | null;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
  uses: number;
}

export type CreatedToken = TokenDoc & { token: string; ca_sha256: string };

function ttlSeconds(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text, '--ttl');
  if (ms < 60_000) throw new UsageError(`--ttl ${text} is shorter than a minute`, { hint: 'write it like 30m, 24h or 720h' });
  return Math.round(ms / 1000);
}

function jsonWanted(s: Session, json: boolean | undefined): void {
  if (json === true) s.ui.format = 'json';
}

function stateText(s: Session, state: TokenDoc['state']): string {
  return paint(s.ui.color, state === 'active' ? 'green' : state === 'revoked' ? 'red' : 'gray', state);
}

/** What to run with a new token, for people. */
function joinHelp(t: CreatedToken): string {
  if (t.kind === 'cluster') {
    return `start the cluster with:\n  OAK_JOIN_TOKEN=${t.token} SYSTEM_MANAGER_URL=<this root's address> CLUSTER_NAME=${t.name ?? '<name>'} oak-cluster`;
  }
  return `start a worker of cluster ${t.cluster ?? '?'} with:\n  NodeEngine -a <the cluster's address> -p 10100 -t ${t.token}`;
}

export function registerToken(program: Command): void {
  const token = program
    .command('token')
    .alias('tokens')
    .description('join tokens: what a cluster needs to join this root and a worker its cluster')
    .addHelpText(
      'after',
      `
A token is shown once, when it is created; the root keeps only its hash. It carries the
fingerprint of the root's CA, so the joining side checks whom it talks to on first contact.
Admin and Infrastructure_Provider only.

Examples:
  $ oak token create cluster --name east --ttl 24h
  $ oak token create worker --cluster east
  $ oak token ls
  $ oak token revoke k3x9q2ab`,
    );

  const create = token
    .command('create')
    .description('create a join token (printed once)')
    .addHelpText('after', '\nExamples:\n  $ oak token create cluster --name east --ttl 24h\n  $ oak token create worker --cluster east');

  create
    .command('cluster')
    .description('a token a cluster joins this root with (bound to its name)')
    .option('-n, --name <name>', 'bind it to this cluster name now (else at its first use)')
    .option('--ttl <duration>', 'expire after this long (30m, 24h, 720h; default never)')
    .option('--json', 'print the answer as JSON (same as -o json)')
    .addHelpText('after', '\nExamples:\n  $ oak token create cluster --name east\n  $ oak token create cluster --name east --ttl 24h --json | jq -r .token')
    .action(async (opts: { name?: string; ttl?: string; json?: boolean }, cmd: Command) => {
      const s = session(cmd);
      jsonWanted(s, opts.json);
      const ttl = ttlSeconds(opts.ttl);
      const t = await s.api.request<CreatedToken>('POST', '/api/tokens', {
        body: { kind: 'cluster', ...(opts.name !== undefined ? { name: opts.name } : {}), ...(ttl !== undefined ? { ttl_s: ttl } : {}) },
      });
      await emit(s.ui, t, () => `${t.token}\n\ncluster token ${t.id}${t.name ? ` for cluster ${t.name}` : ' (bound to the name of the first cluster that uses it)'}, ${t.expires_at ? `expires ${t.expires_at}` : 'never expires'}; it is not shown again.\n${joinHelp(t)}`);
    });

  create
    .command('worker')
    .description('a token workers join a cluster with')
    .requiredOption('-c, --cluster <name>', 'the cluster the workers join')
    .option('--ttl <duration>', 'expire after this long (30m, 24h, 720h; default never)')
    .option('--json', 'print the answer as JSON (same as -o json)')
    .addHelpText('after', '\nExamples:\n  $ oak token create worker --cluster east\n  $ oak token create worker --cluster east --ttl 1h')
    .action(async (opts: { cluster: string; ttl?: string; json?: boolean }, cmd: Command) => {
      const s = session(cmd);
      jsonWanted(s, opts.json);
      const ttl = ttlSeconds(opts.ttl);
      const t = await s.api.request<CreatedToken>('POST', '/api/tokens', {
        body: { kind: 'worker', cluster: opts.cluster, ...(ttl !== undefined ? { ttl_s: ttl } : {}) },
      });
      await emit(s.ui, t, () => `${t.token}\n\nworker token ${t.id} for cluster ${t.cluster ?? '?'}, ${t.expires_at ? `expires ${t.expires_at}` : 'never expires'}; it is not shown again.\n${joinHelp(t)}`);
    });

  token
    .command('ls')
    .alias('list')
    .description('list join tokens (never their secrets)')
    .option('--all', 'also revoked and expired tokens')
    .option('--json', 'print JSON (same as -o json)')
    .addHelpText('after', '\nExamples:\n  $ oak token ls\n  $ oak token ls --all --json')
    .action(async (opts: { all?: boolean; json?: boolean }, cmd: Command) => {
      const s = session(cmd);
      jsonWanted(s, opts.json);
      const all = await s.api.request<TokenDoc[]>('GET', '/api/tokens');
      const list = opts.all === true ? all : all.filter((t) => t.state === 'active');
      await emit(s.ui, list, async () => {
        if (list.length === 0) return all.length === 0 ? "no join tokens; create one with 'oak token create cluster --name <name>'" : 'no active join tokens (--all shows revoked and expired ones)';
        return table(
          s.ui,
          ['ID', 'KIND', 'CLUSTER', 'STATE', 'EXPIRES', 'USES', 'LAST USED', 'CREATED'],
          list.map((t) => [
            t.id,
            t.kind,
            dash(t.kind === 'cluster' ? t.name : t.cluster),
            stateText(s, t.state),
            t.expires_at ? (t.state === 'active' ? `in ${age(new Date().toISOString(), Date.parse(t.expires_at))}` : t.expires_at) : 'never',
            String(t.uses),
            t.last_used_at ? `${age(t.last_used_at)} ago` : '-',
            `${age(t.created_at)} ago`,
          ]),
        );
      });
    });

  token
    .command('revoke')
    .alias('rm')
    .description('revoke a join token: it joins nothing more; workers that joined with it lose their MQTT credentials')
    .argument('<id>', 'token id (first column of oak token ls)')
    .option('--json', 'print JSON (same as -o json)')
    .addHelpText('after', '\nExamples:\n  $ oak token revoke k3x9q2ab')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const s = session(cmd);
      jsonWanted(s, opts.json);
      // a whole token pasted instead of its id: take the id, never send the secret
      const m = /^oak1\.[cw]\.([a-z0-9]{8})\./.exec(id.trim());
      const tokenId = m?.[1] ?? id.trim();
      if (!new RegExp(JOIN_TOKEN_ID_PATTERN).test(tokenId)) throw new UsageError(`${JSON.stringify(id)} is not a token id`, { hint: "a token id is 8 characters a-z0-9; see 'oak token ls'" });
      const t = await s.api.request<TokenDoc>('DELETE', `/api/tokens/${tokenId}`);
      await emit(s.ui, t, () => keyValues(s.ui, [['revoked', t.id], ['kind', t.kind], ['cluster', t.kind === 'cluster' ? t.name : t.cluster], ['at', t.revoked_at]]));
    });
}
