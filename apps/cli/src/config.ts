/**
 * The CLI's config file: `$OAK_CONFIG`, else `$XDG_CONFIG_HOME/oak/config.json`, else
 * `~/.config/oak/config.json`. It holds the root URL, the output format and the tokens of the last
 * `oak login` (never a password). The directory is created 0700 and the file written 0600,
 * atomically (write a temporary file, then rename).
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { CliError, UsageError } from './errors.ts';

export const DEFAULT_ROOT_URL = 'http://127.0.0.1:10000';
export const OUTPUT_FORMATS = ['table', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface OakConfig {
  root_url?: string;
  output?: OutputFormat;
  token?: string;
  refresh_token?: string;
  username?: string;
  /** the root CA pinned at the first HTTPS login (PEM), and the root origin it belongs to */
  ca_pem?: string;
  ca_for?: string;
}

/** Keys `oak config set` accepts, with the aliases people type. */
export const SETTABLE_KEYS = {
  root_url: ['root_url', 'root', 'root-url', 'url'],
  output: ['output', 'format', 'o'],
} as const;
export type SettableKey = keyof typeof SETTABLE_KEYS;

export function settableKey(name: string): SettableKey | undefined {
  for (const [key, aliases] of Object.entries(SETTABLE_KEYS) as [SettableKey, readonly string[]][]) {
    if (aliases.includes(name)) return key;
  }
  return undefined;
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.OAK_CONFIG !== undefined && env.OAK_CONFIG !== '') return env.OAK_CONFIG;
  const base = env.XDG_CONFIG_HOME !== undefined && env.XDG_CONFIG_HOME !== '' ? env.XDG_CONFIG_HOME : join(homedir(), '.config');
  return join(base, 'oak', 'config.json');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function isOutputFormat(v: unknown): v is OutputFormat {
  return typeof v === 'string' && (OUTPUT_FORMATS as readonly string[]).includes(v);
}

export function loadConfig(path = configPath()): OakConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new CliError(`cannot read the config file ${path}: ${(err as Error).message}`, { hint: 'check its permissions, or point OAK_CONFIG at another file' });
  }
  let raw: unknown;
  try {
    raw = text.trim() === '' ? {} : JSON.parse(text);
  } catch {
    throw new CliError(`the config file ${path} is not valid JSON`, { hint: `fix it or delete it (then run 'oak login' again)` });
  }
  if (!isRecord(raw)) throw new CliError(`the config file ${path} must hold a JSON object`, { hint: 'fix it or delete it' });
  const c: OakConfig = {};
  for (const k of ['root_url', 'token', 'refresh_token', 'username', 'ca_pem', 'ca_for'] as const) {
    const v = raw[k];
    if (typeof v === 'string' && v !== '') c[k] = v;
  }
  if (isOutputFormat(raw.output)) c.output = raw.output;
  return c;
}

export function saveConfig(config: OakConfig, path = configPath()): void {
  const dir = dirname(path);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, path);
  } catch (err) {
    throw new CliError(`cannot write the config file ${path}: ${(err as Error).message}`, { hint: 'check the permissions of its directory, or point OAK_CONFIG at another file' });
  }
}

/** Reads, changes and writes the config file in one step. */
export function updateConfig(change: (c: OakConfig) => void, path = configPath()): OakConfig {
  const c = loadConfig(path);
  change(c);
  saveConfig(c, path);
  return c;
}

/** `host:port` and `http://host:port/` both become `http://host:port`. */
export function normalizeRootUrl(input: string, source: string): string {
  let s = input.trim();
  if (s === '') throw new UsageError(`the root URL from ${source} is empty`, { hint: `give one like ${DEFAULT_ROOT_URL}` });
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) s = `http://${s}`;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new UsageError(`the root URL from ${source} is not a URL: ${JSON.stringify(input)}`, { hint: `give one like ${DEFAULT_ROOT_URL}` });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new UsageError(`the root URL from ${source} must use http or https, not ${u.protocol.replace(':', '')}`, { hint: `give one like ${DEFAULT_ROOT_URL}` });
  }
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
}

export interface RootChoice {
  url: string;
  /** where it came from, for messages: `--root`, `OAK_ROOT_URL`, the config file, the default */
  source: string;
}

/** `--root` > `OAK_ROOT_URL` > config file > default. */
export function chooseRoot(flag: string | undefined, config: OakConfig, env: NodeJS.ProcessEnv = process.env): RootChoice {
  if (flag !== undefined) return { url: normalizeRootUrl(flag, '--root'), source: '--root' };
  if (env.OAK_ROOT_URL !== undefined && env.OAK_ROOT_URL !== '') return { url: normalizeRootUrl(env.OAK_ROOT_URL, 'OAK_ROOT_URL'), source: 'OAK_ROOT_URL' };
  if (config.root_url !== undefined) return { url: normalizeRootUrl(config.root_url, 'the config file'), source: 'config file' };
  return { url: DEFAULT_ROOT_URL, source: 'default' };
}

/** `-o` > `OAK_OUTPUT` > config file > table. */
export function chooseOutput(flag: string | undefined, config: OakConfig, env: NodeJS.ProcessEnv = process.env): OutputFormat {
  const pick = flag ?? (env.OAK_OUTPUT !== undefined && env.OAK_OUTPUT !== '' ? env.OAK_OUTPUT : undefined);
  if (pick !== undefined) {
    if (!isOutputFormat(pick)) throw new UsageError(`unknown output format ${JSON.stringify(pick)}`, { hint: `use one of ${OUTPUT_FORMATS.join(', ')}` });
    return pick;
  }
  return config.output ?? 'table';
}

/** The claims of a JWT, read without verifying it (for display only). */
export function tokenClaims(token: string): { name?: string; roles?: string[]; exp?: number } | undefined {
  const part = token.split('.')[1];
  if (part === undefined) return undefined;
  try {
    const v: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    if (!isRecord(v)) return undefined;
    const out: { name?: string; roles?: string[]; exp?: number } = {};
    if (typeof v.name === 'string') out.name = v.name;
    if (Array.isArray(v.roles)) out.roles = v.roles.filter((r): r is string => typeof r === 'string');
    if (typeof v.exp === 'number') out.exp = v.exp;
    return out;
  } catch {
    return undefined;
  }
}
