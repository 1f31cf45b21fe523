/** `oak user passwd`: change your own password (with the current one) or, as an Admin / Organization_Admin, another user's. */
import type { Command } from 'commander';
import { tokenClaims, updateConfig } from '../config.ts';
import { session } from '../context.ts';
import { UsageError } from '../errors.ts';
import { emit } from '../output.ts';
import { askHidden, canPrompt, readStdin } from '../prompt.ts';

export const MIN_PASSWORD_LENGTH = 8;

interface PasswdOptions {
  passwordStdin?: boolean;
}

const env = (k: string): string | undefined => (process.env[k] !== undefined && process.env[k] !== '' ? process.env[k] : undefined);

export function registerUser(program: Command): void {
  const user = program
    .command('user')
    .description('your user account')
    .addHelpText('after', '\nExamples:\n  $ oak user passwd\n  $ oak user passwd paul       # as Admin or Organization_Admin');

  user
    .command('passwd')
    .alias('password')
    .description('change a password (at least 8 characters); every session of that user ends')
    .argument('[user]', 'whose password (default: yours); another user needs Admin or Organization_Admin')
    .option('--password-stdin', 'read the passwords from stdin: for your own, the current one on the first line and the new one on the second; for another user, the new one')
    .addHelpText(
      'after',
      `
Without --password-stdin the passwords come from OAK_PASSWORD (the current one) and
OAK_NEW_PASSWORD, or from prompts without echo. Changing your own password logs you in again
with the new one (the old tokens are revoked on the root).

Examples:
  $ oak user passwd
  $ printf '%s\\n%s\\n' "$OLD" "$NEW" | oak user passwd --password-stdin
  $ echo "$NEW" | oak user passwd paul --password-stdin`,
    )
    .action(async (target: string | undefined, opts: PasswdOptions, cmd: Command) => {
      const s = session(cmd);
      const token = s.api.token;
      const me = (token !== undefined ? tokenClaims(token)?.name : undefined) ?? s.config.username;
      const name = target ?? me;
      if (name === undefined) throw new UsageError('not logged in: no user to change', { hint: "run 'oak login' first" });
      const own = name === me;
      let current: string | undefined;
      let next: string | undefined;
      if (opts.passwordStdin === true) {
        const lines = (await readStdin()).split(/\r?\n/);
        if (own) [current, next] = lines;
        else [next] = lines;
      } else {
        current = own ? env('OAK_PASSWORD') : undefined;
        next = env('OAK_NEW_PASSWORD');
        if (own && current === undefined && canPrompt()) current = await askHidden(`current password for ${name}: `);
        if (next === undefined && canPrompt()) {
          next = await askHidden(`new password for ${name}: `);
          if ((await askHidden('again: ')) !== next) throw new UsageError('the two new passwords differ');
        }
      }
      if (own && (current === undefined || current === '')) throw new UsageError('the current password is needed to change your own', { hint: 'use --password-stdin (current, then new) or OAK_PASSWORD' });
      if (next === undefined || next === '') throw new UsageError('no new password given', { hint: 'use --password-stdin or OAK_NEW_PASSWORD when not on a terminal' });
      if ([...next].length < MIN_PASSWORD_LENGTH) throw new UsageError(`the new password must have at least ${MIN_PASSWORD_LENGTH} characters`);
      const body: { password: string; old_password?: string } = { password: next };
      if (own && current !== undefined) body.old_password = current;
      const r = await s.api.request<{ message: string }>('PUT', `/api/user/${encodeURIComponent(name)}/password`, { body });
      let relogged = false;
      if (own) {
        // the change revoked our tokens: log in again with the new password
        const pair = await s.api.login(name, next);
        updateConfig((c) => {
          c.token = pair.token;
          c.refresh_token = pair.refresh_token;
          c.username = name;
        }, s.configPath);
        relogged = true;
      }
      await emit(s.ui, { user: name, changed: true, logged_in_again: relogged, message: r.message }, () =>
        own ? `password of ${name} changed; every other session of ${name} has ended, this one is logged in again` : `password of ${name} changed; every session of ${name} has ended`,
      );
    });
}
