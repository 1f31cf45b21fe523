/**
 * Everything the CLI prints goes through here: tables for people (status colours only on a
 * terminal and without NO_COLOR), JSON and YAML for scripts, and the one format for errors.
 * Results go to stdout; progress, warnings and errors go to stderr.
 */
import type { InstanceState } from '@oak/contracts';
import type { OutputFormat } from './config.ts';
import { formatIssue, isServerError, UnreachableError, type CliError } from './errors.ts';

export interface Ui {
  format: OutputFormat;
  /** colours on stdout */
  color: boolean;
  /** colours on stderr */
  errColor: boolean;
  /** stderr is a terminal: spinners and prompts are fine */
  interactive: boolean;
  out(text: string): void;
  err(text: string): void;
}

export interface UiOptions {
  format: OutputFormat;
  /** false after --no-color */
  color?: boolean;
  env?: NodeJS.ProcessEnv;
}

function colorWanted(isTty: boolean | undefined, flag: boolean, env: NodeJS.ProcessEnv): boolean {
  if (!flag) return false;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '' && env.FORCE_COLOR !== '0') return true;
  if (env.TERM === 'dumb') return false;
  return isTty === true;
}

export function createUi(opts: UiOptions): Ui {
  const env = opts.env ?? process.env;
  const flag = opts.color !== false;
  return {
    format: opts.format,
    color: colorWanted(process.stdout.isTTY, flag, env),
    errColor: colorWanted(process.stderr.isTTY, flag, env),
    // a terminal without a width (some ptys) would make a spinner redraw endlessly
    interactive: process.stderr.isTTY === true && env.TERM !== 'dumb' && (process.stderr.columns ?? 0) > 0,
    out: (text) => {
      process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    },
    err: (text) => {
      process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
    },
  };
}

// ---- colours (plain ANSI, no dependency)

const CODES = { red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36, gray: 90, bold: 1, dim: 2 } as const;
export type Colour = keyof typeof CODES;

export function paint(on: boolean, colour: Colour, text: string): string {
  return on ? `\x1b[${CODES[colour]}m${text}\x1b[0m` : text;
}

const GOOD = new Set(['RUNNING', 'COMPLETED', 'ACTIVE', 'ok']);
const BAD = new Set(['FAILED', 'DEAD', 'INACTIVE']);
const QUIET = new Set(['UNDEPLOYED']);

/** Colour of a state: RUNNING green, FAILED/DEAD red, pending yellow. */
export function statusColour(status: string): Colour {
  if (GOOD.has(status)) return 'green';
  if (BAD.has(status)) return 'red';
  if (QUIET.has(status)) return 'gray';
  return 'yellow';
}

export function status(on: boolean, s: InstanceState | string): string {
  return paint(on, statusColour(s), s);
}

// ---- structured output

export async function toYaml(data: unknown): Promise<string> {
  const { stringify } = await import('yaml');
  return stringify(data, { lineWidth: 0 });
}

/**
 * Prints `data` as JSON or YAML when asked for, else what `human` renders. Scripts rely on the
 * JSON/YAML form: it is the API's documents, unchanged.
 */
export async function emit(ui: Ui, data: unknown, human: () => string | Promise<string>): Promise<void> {
  if (ui.format === 'json') ui.out(JSON.stringify(data, null, 2));
  else if (ui.format === 'yaml') ui.out(await toYaml(data));
  else {
    const text = await human();
    if (text !== '') ui.out(text);
  }
}

const NO_BORDER = {
  top: '', 'top-mid': '', 'top-left': '', 'top-right': '',
  bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
  left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '   ',
};

/** A borderless table with a header row (kubectl style). */
export async function table(ui: Ui, head: string[], rows: string[][]): Promise<string> {
  const { default: Table } = await import('cli-table3');
  const t = new Table({
    head: head.map((h) => paint(ui.color, 'bold', h)),
    chars: NO_BORDER,
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0, compact: true },
  });
  for (const r of rows) t.push(r);
  return t
    .toString()
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n');
}

/** `key: value` lines with the values aligned. */
export function keyValues(ui: Ui, pairs: [string, string | number | null | undefined][]): string {
  const shown = pairs.filter((p): p is [string, string | number] => p[1] !== undefined && p[1] !== null && p[1] !== '');
  const w = Math.max(0, ...shown.map(([k]) => k.length)) + 1;
  return shown.map(([k, v]) => `${paint(ui.color, 'bold', `${k}:`.padEnd(w))} ${String(v)}`).join('\n');
}

/** How long ago an ISO time was: `5s`, `3m`, `2h`, `4d`. */
export function age(iso: string | null | undefined, now = Date.now()): string {
  if (iso === null || iso === undefined || iso === '') return '-';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '-';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

/** Count of instances per state, RUNNING first: `2 RUNNING, 1 CREATING`. */
export function stateSummary(ui: Ui | undefined, states: string[], on = ui?.color ?? false): string {
  if (states.length === 0) return 'no instances';
  const counts = new Map<string, number>();
  for (const s of states) counts.set(s, (counts.get(s) ?? 0) + 1);
  const order = ['RUNNING', 'COMPLETED'];
  const keys = [...counts.keys()].sort((a, b) => {
    const ia = order.indexOf(a);
    const ib = order.indexOf(b);
    return (ia === -1 ? 99 : ia) - (ib === -1 ? 99 : ib) || a.localeCompare(b);
  });
  return keys.map((k) => `${counts.get(k) ?? 0} ${status(on, k)}`).join(', ');
}

export function dash(v: string | number | null | undefined): string {
  return v === null || v === undefined || v === '' ? '-' : String(v);
}

// ---- errors

export type PrintableError = CliError | (Error & { code?: string; hint?: string; path?: string });

/** Prints an error the way every command does: `oak: message`, details, hint. Never a stack. */
export function printError(ui: Ui, err: unknown): void {
  const red = (s: string): string => paint(ui.errColor, 'red', s);
  if (err instanceof UnreachableError) {
    if (ui.format === 'json') ui.err(JSON.stringify({ error: { code: 'OAK_UNREACHABLE', message: err.message } }));
    else ui.err(`${red('oak:')} ${err.message}`);
    return;
  }
  if (!(err instanceof Error)) {
    ui.err(`${red('oak:')} ${String(err)}`);
    return;
  }
  const e = err as Error & { hint?: string; path?: string; details?: { path: string; message: string; hint?: string }[]; code?: string };
  if (ui.format === 'json') {
    // scripts get the API's error shape on stderr; failures of the CLI itself use code OAK_CLI
    const body: Record<string, unknown> = { code: isServerError(err) ? err.code : 'OAK_CLI', message: e.message };
    if (e.path !== undefined) body.path = e.path;
    if (e.hint !== undefined) body.hint = e.hint;
    if (e.details !== undefined) body.details = e.details;
    ui.err(JSON.stringify({ error: body }));
    return;
  }
  const lines: string[] = [];
  const withPath = isServerError(err) && e.path !== undefined && e.path !== '' && (e.details === undefined || e.details.length <= 1) && !e.message.includes(e.path);
  lines.push(`${red('oak:')} ${withPath ? `${e.path}: ` : ''}${e.message}`);
  if (e.details !== undefined && e.details.length > 1) for (const d of e.details) lines.push(`  ${formatIssue(d)}`);
  if (e.hint !== undefined && e.hint !== '') lines.push(`  ${paint(ui.errColor, 'dim', 'hint:')} ${e.hint}`);
  ui.err(lines.join('\n'));
}
