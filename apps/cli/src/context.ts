/**
 * What every command works with, built from the global options (`--root`, `-o`, `--no-color`),
 * the environment and the config file.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { Api } from './client.ts';
import { chooseOutput, chooseRoot, configPath, loadConfig, type OakConfig, type RootChoice } from './config.ts';
import { UsageError } from './errors.ts';
import { createUi, type Ui } from './output.ts';

export interface GlobalOptions {
  root?: string;
  output?: string;
  color?: boolean;
  caFile?: string;
}

export interface Session {
  ui: Ui;
  config: OakConfig;
  configPath: string;
  root: RootChoice;
  api: Api;
}

export function globalsOf(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

export function session(cmd: Command): Session {
  const g = globalsOf(cmd);
  const path = configPath();
  const config = loadConfig(path);
  const ui = createUi({ format: chooseOutput(g.output, config), color: g.color !== false });
  const root = chooseRoot(g.root, config);
  const caPem = chooseCa(g.caFile, config, root.url);
  return { ui, config, configPath: path, root, api: new Api(root.url, { config, configPath: path, ...(caPem !== undefined ? { caPem } : {}) }) };
}

/** The origin (scheme://host:port) of a root URL: what a pinned CA belongs to. */
export function rootOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}

/** The CA an https root is verified against: --ca-file > OAK_CA_FILE > the one pinned at login for this root. */
export function chooseCa(flag: string | undefined, config: OakConfig, rootUrl: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const file = flag ?? (env.OAK_CA_FILE !== undefined && env.OAK_CA_FILE !== '' ? env.OAK_CA_FILE : undefined);
  if (file !== undefined) {
    let pem: string;
    try {
      pem = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read the CA file ${file}: ${(err as Error).message}`, { hint: "give the root CA's PEM (<root data dir>/tls/ca.crt)" });
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`${file} holds no PEM certificate`, { hint: "give the root CA's PEM (<root data dir>/tls/ca.crt)" });
    return pem;
  }
  if (config.ca_pem !== undefined && config.ca_for === rootOrigin(rootUrl)) return config.ca_pem;
  return undefined;
}

/** Parses `120s`, `2m`, `500ms`, `1h` or a plain number of seconds. */
export function parseDuration(text: string, flag = '--timeout'): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(text.trim());
  if (!m || m[1] === undefined) throw new UsageError(`${flag} ${JSON.stringify(text)} is not a duration`, { hint: 'write it like 90s, 2m or 500ms' });
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const ms = unit === 'ms' ? n : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n * 3_600_000;
  return Math.round(ms);
}

/** commander argument parser for counts (`scale web 3`, `--tail 50`). */
export function nonNegativeInt(what: string): (v: string) => number {
  return (v: string) => {
    if (!/^\d+$/.test(v.trim())) throw new UsageError(`${what} must be a whole number >= 0, not ${JSON.stringify(v)}`);
    return Number(v);
  };
}
