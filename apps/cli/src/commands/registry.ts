/** `oak registry login|ls|logout`: the organisation's logins to private container registries (docs/security.md). */
import type { Command } from 'commander';
import { REGISTRY_PASSWORD_MAX, registryHostProblem, registryLoginProblem } from '@oak/contracts';
import { session, type Session } from '../context.ts';
import { UsageError } from '../errors.ts';
import { ask, askHidden, canPrompt, readStdin } from '../prompt.ts';
import { age, emit, keyValues, table } from '../output.ts';

export interface RegistryDoc {
  host: string;
  username: string;
  organization_id: string;
  created_at: string;
  created_by: string | null;
  updated_at: string;
}

function jsonWanted(s: Session, json: boolean | undefined): void {
  if (json === true) s.ui.format = 'json';
}

/** `https://Registry.Example.com/` -> `registry.example.com`; then the same checks as the root */
export function hostArgument(text: string): string {
  const host = text.trim().replace(/^https?:\/\//i, '').replace(/\/+$/, '').toLowerCase();
  const problem = registryHostProblem(host);
  if (problem !== undefined) throw new UsageError(problem, { hint: 'oak registry login registry.example.com, or 127.0.0.1:5000' });
  return host;
}

function orgQuery(org: string | undefined): string {
  return org === undefined ? '' : `?organization=${encodeURIComponent(org)}`;
}

export function registerRegistry(program: Command): void {
  const registry = program
    .command('registry')
    .alias('registries')
    .description("logins to private container registries: deploys of images on that host pull with the organisation's login")
    .addHelpText(
      'after',
      `
The root keeps the password encrypted and never shows it again; it goes to a worker only inside
the deploy of an image on that host. Organization_Admin stores and removes logins;
Application_Provider may list them. An Admin gives --org to manage another organisation.

Examples:
  $ echo "$REGISTRY_TOKEN" | oak registry login registry.example.com -u ci --password-stdin
  $ oak registry login 127.0.0.1:5000 -u alice          # asks for the password
  $ oak registry ls
  $ oak registry logout registry.example.com`,
    );

  registry
    .command('login')
    .description("store (or replace) the organisation's login to a registry host")
    .argument('<host>', 'registry host as in image references (registry.example.com, 127.0.0.1:5000)')
    .option('-u, --username <name>', 'registry user name (asked for when missing)')
    .option('--password-stdin', 'read the password from standard input')
    .option('--org <organisation>', 'Admin only: the organisation (name or id)')
    .option('--json', 'print the answer as JSON (same as -o json)')
    .addHelpText('after', '\nExamples:\n  $ echo "$PASS" | oak registry login registry.example.com -u ci --password-stdin\n  $ oak registry login 127.0.0.1:5000 -u alice')
    .action(async (hostText: string, opts: { username?: string; passwordStdin?: boolean; org?: string; json?: boolean }, cmd: Command) => {
      const s = session(cmd);
      jsonWanted(s, opts.json);
      const host = hostArgument(hostText);
      let username = opts.username;
      if (username === undefined) {
        if (!canPrompt() || opts.passwordStdin === true) throw new UsageError('give the registry user name with -u <name>');
        username = (await ask('Username: ')).trim();
      }
      let password: string;
      if (opts.passwordStdin === true) password = await readStdin();
      else if (process.env['OAK_REGISTRY_PASSWORD'] !== undefined && process.env['OAK_REGISTRY_PASSWORD'] !== '') password = process.env['OAK_REGISTRY_PASSWORD'];
      else if (canPrompt()) password = await askHidden('Password: ');
      else throw new UsageError('no password: give --password-stdin (or OAK_REGISTRY_PASSWORD) when there is no terminal to ask on');
      if (password.length > REGISTRY_PASSWORD_MAX) throw new UsageError(`the password has ${password.length} characters; at most ${REGISTRY_PASSWORD_MAX} are taken`);
      const problem = registryLoginProblem(username, password);
      if (problem !== undefined) throw new UsageError(problem);
      const d = await s.api.request<RegistryDoc>('PUT', `/api/registries/${host}${orgQuery(opts.org)}`, { body: { username, password } });
      await emit(s.ui, d, () => `login to ${d.host} stored as ${d.username}; deploys of images on ${d.host} pull with it`);
    });

  registry
    .command('ls')
    .alias('list')
    .description("list the organisation's registry logins (never their passwords)")
    .option('--org <organisation>', 'Admin only: the organisation (name or id)')
    .option('--json', 'print JSON (same as -o json)')
    .addHelpText('after', '\nExamples:\n  $ oak registry ls\n  $ oak registry ls --json')
    .action(async (opts: { org?: string; json?: boolean }, cmd: Command) => {
      const s = session(cmd);
      jsonWanted(s, opts.json);
      const list = await s.api.request<RegistryDoc[]>('GET', `/api/registries${orgQuery(opts.org)}`);
      await emit(s.ui, list, async () => {
        if (list.length === 0) return "no registry logins; store one with 'oak registry login <host> -u <user>'";
        return table(s.ui, ['HOST', 'USERNAME', 'UPDATED', 'CREATED'], list.map((d) => [d.host, d.username, `${age(d.updated_at)} ago`, `${age(d.created_at)} ago`]));
      });
    });

  registry
    .command('logout')
    .alias('rm')
    .description('remove the login to a registry host')
    .argument('<host>', 'registry host (first column of oak registry ls)')
    .option('--org <organisation>', 'Admin only: the organisation (name or id)')
    .option('--json', 'print JSON (same as -o json)')
    .addHelpText('after', '\nExamples:\n  $ oak registry logout registry.example.com')
    .action(async (hostText: string, opts: { org?: string; json?: boolean }, cmd: Command) => {
      const s = session(cmd);
      jsonWanted(s, opts.json);
      const host = hostArgument(hostText);
      const d = await s.api.request<RegistryDoc>('DELETE', `/api/registries/${host}${orgQuery(opts.org)}`);
      await emit(s.ui, d, () => keyValues(s.ui, [['removed', d.host], ['username', d.username]]));
    });
}
