/**
 * The command line of the installer, shared by `install.sh` (oak-install.mjs inside each artifact)
 * and `oak install` / `oak uninstall`: the same flags, the same checks, the same output.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { install, uninstall, type InstallResult, type UninstallResult } from './apply.ts';
import { InstallError, ROLE_FLAGS, ROLES, type RawFlags, type Role } from './plan.ts';

/** the help text; `install`/`uninstall` are how the caller spells the two commands */
export function installUsage(install = './install.sh', uninstall = './install.sh uninstall'): string {
  return `Usage: ${install} [worker|cluster|root|full|cli] [settings] [--prefix dir] [--no-systemd] [--allow-downgrade] [--json]
       ${uninstall} <role> [--prefix dir] [--purge] [--json]

Settings (validated; each one a flag of the program, the join token kept in a 0600 file):
  worker:  --cluster <host[:10100]> --token <oak1.w....> [--name n] [--location lat,long]
           [--netmanager [--netmanager-port 6000] [--public-address ip]] [--runtimes list]
           [--isolation auto|on|off] [--namespace ns] [--containerd socket] [--report-interval ms]
  cluster: --root <host[:50052]> --token <oak1.c....> --name <cluster> [--location lat,long]
  root:    [--port 10000] [--tls auto]
  full:    [--name worker] [--location lat,long] [--public-address ip] [--port 10000]
  any:     [--data-dir /var/lib/oak/<role>] [--node /usr/bin/node]
           [--no-restart]: write and enable everything, restart nothing (a fleet upgrade restarts itself)

Puts the program in <prefix>/opt/oak/<program>/<version> (link 'current'), the data dir (0700),
a systemd unit (enabled and started) or, with --no-systemd, prints the command to run. Installing
a newer artifact over an older one keeps the data dir and the settings; an older one is refused
unless --allow-downgrade. Nothing is downloaded.

Examples:
  $ ${install} worker --cluster 192.168.1.10 --token oak1.w.…
  $ ${install} cluster --root 10.0.0.1 --name c1 --location 48.1,11.6 --token oak1.c.…
  $ ${install} worker --no-systemd --prefix /tmp/oak-test --cluster 127.0.0.1 --token oak1.w.…
  $ ${uninstall} worker --purge
Docs: docs/deployment.md`;
}

const SHARED = ['prefix', 'no-systemd', 'no-restart', 'allow-downgrade', 'json', 'purge', 'help', 'artifact-dir', 'node'];
const BOOLEAN = new Set(['no-systemd', 'no-restart', 'allow-downgrade', 'json', 'purge', 'help', 'netmanager']);

export interface InstallerOutput {
  code: number;
  stdout: string;
  stderr: string;
  result?: InstallResult | UninstallResult;
}

export interface InstallerContext {
  /** where the unpacked artifact is (install.sh: its own directory; oak install: an extracted --artifact) */
  artifactDir?: string;
  /** how the help spells the commands (default ./install.sh) */
  names?: [install: string, uninstall: string];
}

const fail = (e: unknown, json: boolean): InstallerOutput => {
  if (e instanceof InstallError) {
    const body = json ? `${JSON.stringify({ error: { code: e.code, message: e.message, hint: e.hint } })}\n` : `install: ${e.message}\n  hint: ${e.hint}\n`;
    return { code: e.code === 'INVALID_INPUT' || e.code === 'DOWNGRADE' || e.code === 'WRONG_ARTIFACT' ? 2 : 1, stdout: '', stderr: body };
  }
  return { code: 1, stdout: '', stderr: `install: ${e instanceof Error ? e.message : String(e)}\n` };
};

/** Parses and runs one installer command; never throws, never exits (the caller prints). */
export function runInstaller(argv: string[], ctx: InstallerContext = {}): InstallerOutput {
  const allFlags = [...new Set([...SHARED, ...Object.values(ROLE_FLAGS).flat()])];
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: Object.fromEntries(allFlags.map((f) => [f, { type: BOOLEAN.has(f) ? 'boolean' : 'string' }])) as NonNullable<ParseArgsConfig['options']>,
    });
  } catch (err) {
    return fail(new InstallError('INVALID_INPUT', (err as Error).message, 'see install --help'), argv.includes('--json'));
  }
  const v = parsed.values as Record<string, string | boolean | undefined>;
  const json = v.json === true;
  if (v.help === true) return { code: 0, stdout: `${installUsage(...(ctx.names ?? []))}\n`, stderr: '' };
  const pos = [...parsed.positionals];
  const action = pos[0] === 'install' || pos[0] === 'uninstall' ? (pos.shift() as 'install' | 'uninstall') : 'install';
  const roleWord = pos.shift();
  if (pos.length > 0) return fail(new InstallError('INVALID_INPUT', `unexpected argument ${JSON.stringify(pos[0])}`, 'see install --help'), json);
  if (roleWord !== undefined && !(ROLES as readonly string[]).includes(roleWord)) {
    return fail(new InstallError('INVALID_INPUT', `unknown role ${JSON.stringify(roleWord.slice(0, 40))}`, `one of ${ROLES.join(', ')}`), json);
  }
  const role = roleWord as Role | undefined;
  const prefix = typeof v.prefix === 'string' ? v.prefix : '/';
  try {
    if (action === 'uninstall') {
      if (role === undefined) throw new InstallError('INVALID_INPUT', 'uninstall needs the role', `one of ${ROLES.join(', ')}`);
      for (const k of Object.keys(v)) if (v[k] !== undefined && !['prefix', 'purge', 'json', 'artifact-dir', 'node'].includes(k)) throw new InstallError('INVALID_INPUT', `--${k} does not apply to uninstall`, 'uninstall takes --prefix, --purge and --json');
      const r = uninstall(role, prefix, v.purge === true);
      return { code: 0, stdout: json ? `${JSON.stringify(r)}\n` : `${r.lines.join('\n')}\n`, stderr: '', result: r };
    }
    const artifactDir = typeof v['artifact-dir'] === 'string' ? v['artifact-dir'] : ctx.artifactDir;
    if (artifactDir === undefined) throw new InstallError('INVALID_INPUT', 'no artifact given', 'oak install <role> --artifact oak-<program>-<version>-linux-<arch>.tar.gz, or ./install.sh inside an unpacked artifact');
    if (v.purge !== undefined) throw new InstallError('INVALID_INPUT', '--purge applies to uninstall only', 'drop --purge');
    const flags: RawFlags = {};
    for (const [k, val] of Object.entries(v)) if (!SHARED.includes(k) && val !== undefined) flags[k] = val;
    const r = install({
      artifactDir,
      ...(role !== undefined ? { role } : {}),
      prefix,
      flags,
      noSystemd: v['no-systemd'] === true,
      noRestart: v['no-restart'] === true,
      allowDowngrade: v['allow-downgrade'] === true,
      node: typeof v.node === 'string' ? v.node : process.execPath,
    });
    return { code: 0, stdout: json ? `${JSON.stringify(r)}\n` : `${r.lines.join('\n')}\n`, stderr: '', result: r };
  } catch (e) {
    return fail(e, json);
  }
}
