/** `oak audit`: the root's audit trail (Admin). */
import type { Command } from 'commander';
import type { AuditEntryDoc as AuditEntry } from '@oak/contracts';
import { parseDuration, session } from '../context.ts';
import { UsageError } from '../errors.ts';
import { dash, emit, paint, table } from '../output.ts';

interface AuditOptions {
  since?: string;
  until?: string;
  user?: string;
  action?: string;
  limit?: string;
  all?: boolean;
  json?: boolean;
}

/** `2h`, `30m` (that long ago) or an ISO-8601 time */
export function auditTime(text: string, flag: string, now = Date.now()): string {
  if (/^\d+(\.\d+)?\s*(ms|s|m|h)?$/.test(text.trim())) return new Date(now - parseDuration(text, flag)).toISOString();
  if (/^\d+d$/.test(text.trim())) return new Date(now - Number(text.trim().slice(0, -1)) * 86_400_000).toISOString();
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new UsageError(`${flag} ${JSON.stringify(text)} is neither a duration nor a time`, { hint: 'write it like 2h, 7d or 2026-12-01T10:00:00Z' });
  return new Date(t).toISOString();
}

const MAX_ALL = 100_000;

export function registerAudit(program: Command): void {
  program
    .command('audit')
    .description('who changed what, when and from where (Admin): newest first')
    .option('--since <when>', 'entries since a duration ago (2h, 7d) or an ISO-8601 time')
    .option('--until <when>', 'entries before a duration ago or a time')
    .option('--user <name>', 'only this user (name or id)')
    .option('--action <text>', 'only actions containing this (login, login_failed, logout, POST /api/application, ...)')
    .option('--limit <n>', 'at most this many entries (1..1000, default 50)')
    .option('--all', 'every entry that matches (pages through them)')
    .option('--json', 'print JSON (same as -o json)')
    .addHelpText(
      'after',
      `
Recorded: every change (a request other than GET by a logged-in user, whatever the answer),
logins, failed logins and logouts. Request bodies are never recorded.

Examples:
  $ oak audit
  $ oak audit --since 24h --action login_failed
  $ oak audit --user paul --json`,
    )
    .action(async (opts: AuditOptions, cmd: Command) => {
      const s = session(cmd);
      if (opts.json === true) s.ui.format = 'json';
      let limit = 50;
      if (opts.limit !== undefined) {
        if (!/^\d{1,4}$/.test(opts.limit) || Number(opts.limit) < 1 || Number(opts.limit) > 1000) throw new UsageError(`--limit must be 1..1000, not ${JSON.stringify(opts.limit)}`);
        limit = Number(opts.limit);
      }
      const q = new URLSearchParams();
      if (opts.since !== undefined) q.set('since', auditTime(opts.since, '--since'));
      if (opts.until !== undefined) q.set('until', auditTime(opts.until, '--until'));
      if (opts.user !== undefined) q.set('user', opts.user);
      if (opts.action !== undefined) q.set('action', opts.action);
      q.set('limit', String(opts.all === true ? 1000 : limit));
      const entries: AuditEntry[] = [];
      let before: number | null = null;
      do {
        if (before !== null) q.set('before', String(before));
        const page: { entries: AuditEntry[]; next_before: number | null } = await s.api.request('GET', `/api/audit?${q.toString()}`);
        entries.push(...page.entries);
        before = opts.all === true && entries.length < MAX_ALL ? page.next_before : null;
      } while (before !== null);
      await emit(s.ui, entries, async () => {
        if (entries.length === 0) return 'no audit entries match';
        return table(
          s.ui,
          ['TIME', 'USER', 'ACTION', 'TARGET', 'STATUS', 'FROM'],
          entries.map((e) => [
            e.at.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
            dash(e.user_name),
            e.action,
            dash(e.target),
            e.status >= 400 ? paint(s.ui.color, 'red', `${e.status}${e.error_code ? ` ${e.error_code}` : ''}`) : String(e.status),
            dash(e.address),
          ]),
        );
      });
    });
}
