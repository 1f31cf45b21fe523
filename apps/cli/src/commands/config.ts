/** `oak config set|unset|show|path`. */
import type { Command } from 'commander';
import {
  OUTPUT_FORMATS,
  SETTABLE_KEYS,
  isOutputFormat,
  normalizeRootUrl,
  settableKey,
  tokenClaims,
  updateConfig,
  type SettableKey,
} from '../config.ts';
import { session } from '../context.ts';
import { UsageError } from '../errors.ts';
import { emit, keyValues, paint } from '../output.ts';

const KEY_HELP = `
Keys:
  root_url   the root's REST API (aliases: root, url)      default http://127.0.0.1:10000
  output     table, json or yaml (alias: format)           default table

The root used is --root, else OAK_ROOT_URL, else root_url, else the default.
The file is $OAK_CONFIG, else ~/.config/oak/config.json (mode 0600).`;

function keyOf(name: string): SettableKey {
  const k = settableKey(name);
  if (k === undefined) throw new UsageError(`unknown setting ${JSON.stringify(name)}`, { hint: `settable: ${Object.keys(SETTABLE_KEYS).join(', ')}` });
  return k;
}

export function registerConfig(program: Command): void {
  const config = program
    .command('config')
    .description('show or change the CLI settings (root URL, output format)')
    .addHelpText('after', `${KEY_HELP}

Examples:
  $ oak config set root_url http://10.0.0.5:10000
  $ oak config set output json
  $ oak config show`);

  config
    .command('set')
    .description('store a setting')
    .argument('<key>', 'root_url or output')
    .argument('<value>', 'the new value')
    .addHelpText('after', `${KEY_HELP}

Examples:
  $ oak config set root_url 10.0.0.5:10000      # http:// is added
  $ oak config set output yaml`)
    .action(async (name: string, value: string, _opts: unknown, cmd: Command) => {
      const s = session(cmd);
      const key = keyOf(name);
      let stored: string;
      if (key === 'root_url') stored = normalizeRootUrl(value, 'the command line');
      else {
        if (!isOutputFormat(value)) throw new UsageError(`unknown output format ${JSON.stringify(value)}`, { hint: `use one of ${OUTPUT_FORMATS.join(', ')}` });
        stored = value;
      }
      updateConfig((c) => {
        if (key === 'root_url') c.root_url = stored;
        else if (isOutputFormat(stored)) c.output = stored;
      }, s.configPath);
      await emit(s.ui, { [key]: stored }, () => `${key} = ${stored}`);
    });

  config
    .command('unset')
    .description('remove a setting (back to its default)')
    .argument('<key>', 'root_url or output')
    .addHelpText('after', '\nExample:\n  $ oak config unset root_url')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const s = session(cmd);
      const key = keyOf(name);
      updateConfig((c) => {
        delete c[key];
      }, s.configPath);
      await emit(s.ui, { [key]: null }, () => `${key} unset`);
    });

  config
    .command('show')
    .description('the settings in effect, and where they come from (tokens are not shown)')
    .addHelpText('after', '\nExamples:\n  $ oak config show\n  $ oak config show -o json')
    .action(async (_opts: unknown, cmd: Command) => {
      const s = session(cmd);
      const claims = s.config.token !== undefined ? tokenClaims(s.config.token) : undefined;
      const expired = claims?.exp !== undefined && claims.exp * 1000 < Date.now();
      const data = {
        root_url: s.root.url,
        root_url_source: s.root.source,
        output: s.ui.format,
        username: s.config.username ?? null,
        logged_in: s.config.token !== undefined,
        token_expires_at: claims?.exp !== undefined ? new Date(claims.exp * 1000).toISOString() : null,
        config_file: s.configPath,
      };
      await emit(s.ui, data, () =>
        keyValues(s.ui, [
          ['root_url', `${data.root_url} ${paint(s.ui.color, 'dim', `(${data.root_url_source})`)}`],
          ['output', data.output],
          ['user', data.username ?? '-'],
          ['token', data.logged_in ? (expired ? 'expired (renewed on next use)' : 'stored') : "none: run 'oak login'"],
          ['config file', data.config_file],
        ]),
      );
    });

  config
    .command('path')
    .description('print the path of the config file')
    .addHelpText('after', '\nExample:\n  $ chmod 600 "$(oak config path)"')
    .action((_opts: unknown, cmd: Command) => {
      const s = session(cmd);
      s.ui.out(s.configPath);
    });
}
