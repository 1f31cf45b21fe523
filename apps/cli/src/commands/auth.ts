/** `oak login`, `oak logout`, `oak whoami`. */
import type { Command } from 'commander';
import { tokenClaims, updateConfig } from '../config.ts';
import { fetchPresentedCa } from '@oak/trust/tls';
import { rootOrigin, session, type Session } from '../context.ts';
import { CliError, UsageError } from '../errors.ts';
import { emit, keyValues, paint } from '../output.ts';
import { ask, askHidden, canPrompt, readStdin } from '../prompt.ts';

interface LoginOptions {
  username?: string;
  password?: string;
  passwordStdin?: boolean;
}

function expiresIn(exp: number | undefined): string | undefined {
  if (exp === undefined) return undefined;
  const s = Math.round(exp - Date.now() / 1000);
  if (s <= 0) return 'expired';
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

const TLS_TRUST_CODES = new Set(['SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'DEPTH_ZERO_SELF_SIGNED_CERT']);

function tlsTrustFailure(err: unknown): boolean {
  const seen = new Set<unknown>();
  let e: unknown = err;
  while (e !== undefined && e !== null && !seen.has(e)) {
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && TLS_TRUST_CODES.has(code)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * The CA to keep for an https root: the one given (--ca-file), or, at the first login to a root
 * whose certificate the system does not trust, the CA it presents (trust on first use, with its
 * fingerprint printed). undefined: nothing to keep (plain HTTP, or a certificate the system trusts).
 */
async function pinOnFirstUse(s: Session): Promise<string | undefined> {
  if (!s.root.url.startsWith('https:')) return undefined;
  if (s.api.caPem !== undefined) {
    await s.api.request('GET', '/healthz', { auth: false });
    return s.api.caPem === s.config.ca_pem ? undefined : s.api.caPem;
  }
  try {
    await s.api.request('GET', '/healthz', { auth: false });
    return undefined;
  } catch (err) {
    if (!tlsTrustFailure(err)) throw err;
  }
  const u = new URL(s.root.url);
  const presented = await fetchPresentedCa(u.hostname.replace(/^\[|\]$/g, ''), Number(u.port || 443), { alpn: ['http/1.1'] });
  s.api.caPem = presented.pem;
  await s.api.request('GET', '/healthz', { auth: false });
  s.ui.err(
    `${paint(s.ui.errColor, 'yellow', 'trusting')} the CA of ${u.origin} on first use: sha256 ${presented.fingerprint}\n` +
      "  compare it with the fingerprint oak-root printed at its start; it is kept in the config file and checked from now on (or give --ca-file)",
  );
  return presented.pem;
}

export function registerAuth(program: Command): void {
  program
    .command('login')
    .description('log in to the root and keep the token (never the password) in the config file')
    .option('-u, --username <name>', 'user name (default: the last one, else Admin; env OAK_USER)')
    .option('-p, --password <password>', 'password (visible to other users of this machine: prefer --password-stdin)')
    .option('--password-stdin', 'read the password from stdin')
    .addHelpText(
      'after',
      `
The password comes from -p, --password-stdin, OAK_PASSWORD, or a prompt without echo.
The token and refresh token are stored in the config file (mode 0600); an expired token is
renewed with the refresh token. With --root, the root URL is stored too.

Examples:
  $ oak login                                   # asks for the password
  $ oak --root http://10.0.0.5:10000 login -u Admin
  $ echo "$PASS" | oak login -u Admin --password-stdin`,
    )
    .action(async (opts: LoginOptions, cmd: Command) => {
      const s = session(cmd);
      if (opts.password !== undefined && opts.passwordStdin === true) throw new UsageError('give either --password or --password-stdin, not both');
      let username = opts.username ?? (process.env.OAK_USER !== undefined && process.env.OAK_USER !== '' ? process.env.OAK_USER : undefined);
      const fallbackUser = s.config.username ?? 'Admin';
      if (username === undefined && canPrompt() && opts.passwordStdin !== true) {
        username = (await ask(`user (${fallbackUser}): `)).trim() || fallbackUser;
      }
      username ??= fallbackUser;
      let password: string | undefined;
      if (opts.password !== undefined) {
        password = opts.password;
        s.ui.err(`${paint(s.ui.errColor, 'yellow', 'warning:')} a password on the command line can be read by other users; prefer --password-stdin`);
      } else if (opts.passwordStdin === true) {
        password = await readStdin();
      } else if (process.env.OAK_PASSWORD !== undefined && process.env.OAK_PASSWORD !== '') {
        password = process.env.OAK_PASSWORD;
      } else if (canPrompt()) {
        password = await askHidden(`password for ${username}: `);
      }
      if (password === undefined || password === '') {
        throw new UsageError('no password given', { hint: 'use --password-stdin or OAK_PASSWORD when not on a terminal' });
      }
      const pinned = await pinOnFirstUse(s);
      const pair = await s.api.login(username, password);
      const user = username;
      updateConfig((c) => {
        c.token = pair.token;
        c.refresh_token = pair.refresh_token;
        c.username = user;
        if (s.root.source === '--root') c.root_url = s.root.url;
        if (pinned !== undefined) {
          c.ca_pem = pinned;
          c.ca_for = rootOrigin(s.root.url);
        }
      }, s.configPath);
      await emit(s.ui, { root_url: s.root.url, username, expires_in: pair.expires_in, config: s.configPath }, () =>
        `logged in to ${s.root.url} as ${username} ${paint(s.ui.color, 'dim', `(token saved in ${s.configPath})`)}`,
      );
    });

  program
    .command('logout')
    .description('forget the stored token')
    .addHelpText('after', '\nExample:\n  $ oak logout')
    .action(async (_opts: unknown, cmd: Command) => {
      const s = session(cmd);
      updateConfig((c) => {
        delete c.token;
        delete c.refresh_token;
      }, s.configPath);
      await emit(s.ui, { logged_out: true }, () => 'logged out');
    });

  program
    .command('whoami')
    .description('who the stored token belongs to, and until when it is valid')
    .addHelpText('after', '\nExamples:\n  $ oak whoami\n  $ oak whoami -o json')
    .action(async (_opts: unknown, cmd: Command) => {
      const s = session(cmd);
      const token = process.env.OAK_TOKEN ?? s.config.token;
      if (token === undefined || token === '') throw new CliError('not logged in', { hint: "run 'oak login'" });
      const claims = tokenClaims(token) ?? {};
      const data = { root_url: s.root.url, username: claims.name ?? s.config.username ?? null, roles: claims.roles ?? [], expires_at: claims.exp !== undefined ? new Date(claims.exp * 1000).toISOString() : null };
      await emit(s.ui, data, () =>
        keyValues(s.ui, [
          ['user', data.username],
          ['roles', data.roles.join(', ')],
          ['root', s.root.url],
          ['token expires', expiresIn(claims.exp)],
        ]),
      );
    });
}
