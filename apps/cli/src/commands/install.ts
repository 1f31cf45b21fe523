/**
 * `oak install <role>` and `oak uninstall <role>` (docs/deployment.md): the installer of the
 * release artifacts (install/cli.ts, the same one `install.sh` runs), fed from an artifact file
 * (`--artifact oak-<program>-<version>-linux-<arch>.tar.gz`, checked against the SHA256SUMS next
 * to it when there is one) or, in a checkout, from its `release/` directory (`make dist`).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { CliError, ReportedError, UsageError } from '../errors.ts';
import { runInstaller } from '../install/cli.ts';
import { compareVersions, PROGRAM_OF, ROLES, type Role } from '../install/plan.ts';

const ARCH = ({ x64: 'amd64', arm64: 'arm64' } as Partial<Record<string, string>>)[process.arch] ?? process.arch;
const NAMES: [string, string] = ['oak install', 'oak uninstall'];
const ARTIFACT_RE = /^oak-([a-z-]+?)-(\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?)-linux-([a-z0-9]+)\.tar\.gz$/;

/** the newest artifact of `program` for this machine in a checkout's release/ (cwd first) */
export function findCheckoutArtifact(program: string): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  const dirs = [resolve('release'), resolve(here, '../../../release'), resolve(here, '../../../../release')];
  for (const d of dirs) {
    if (!existsSync(d)) continue;
    const found = readdirSync(d)
      .map((f) => ({ f, m: ARTIFACT_RE.exec(f) }))
      .filter((x) => x.m?.[1] === program && x.m[3] === ARCH)
      .sort((a, b) => compareVersions(b.m?.[2] ?? '0.0.0', a.m?.[2] ?? '0.0.0'));
    if (found[0]) return join(d, found[0].f);
  }
  return undefined;
}

/** refuses a file whose sha256 disagrees with the SHA256SUMS beside it */
function checkSum(file: string): string | undefined {
  const sums = join(dirname(file), 'SHA256SUMS');
  if (!existsSync(sums)) return undefined;
  const line = readFileSync(sums, 'utf8').split('\n').find((l) => l.endsWith(`  ${basename(file)}`));
  if (line === undefined) return `${basename(file)} is not listed in ${sums}: not checked`;
  const want = line.split(' ')[0];
  const got = createHash('sha256').update(readFileSync(file)).digest('hex');
  if (want !== got) throw new CliError(`${file} does not match its SHA256SUMS (${got.slice(0, 12)}… instead of ${want?.slice(0, 12) ?? ''}…)`, { hint: 'copy the artifact again: it is damaged or not the one released' });
  return `checked ${basename(file)} against SHA256SUMS`;
}

/** the arguments after `install`/`uninstall` as typed (global options such as --root belong to the installer here) */
function rawArgsAfter(cmd: Command, word: string): string[] {
  let top: Command = cmd;
  while (top.parent) top = top.parent;
  const raw = (top as unknown as { rawArgs: string[] }).rawArgs;
  const k = raw.indexOf(word);
  return k === -1 ? [] : raw.slice(k + 1);
}

function print(out: { code: number; stdout: string; stderr: string }): void {
  process.stdout.write(out.stdout);
  process.stderr.write(out.stderr);
  if (out.code === 2) throw new UsageError('the installer refused the command line (above)');
  if (out.code !== 0) throw new ReportedError('install failed');
}

export function registerInstall(program: Command): void {
  program
    .command('install')
    .description('install worker|cluster|root|full|cli on this machine from a release artifact (systemd unit, data dir, user)')
    .argument('[args...]', 'role and settings: oak install --help')
    .helpOption(false)
    .allowUnknownOption()
    .action((_args: string[], _opts: unknown, cmd: Command) => {
      let args = rawArgsAfter(cmd, 'install');
      const role = args.find((a) => (ROLES as readonly string[]).includes(a)) as Role | undefined;
      const k = args.findIndex((a) => a === '--artifact' || a.startsWith('--artifact='));
      let file: string | undefined;
      if (k !== -1) {
        const a = args[k] as string;
        file = a.includes('=') ? a.slice(a.indexOf('=') + 1) : args[k + 1];
        args = args.filter((_, i) => i !== k && (a.includes('=') || i !== k + 1));
        if (file === undefined || file === '') throw new UsageError('--artifact needs a file', { hint: 'oak install worker --artifact oak-node-engine-<version>-linux-<arch>.tar.gz' });
      } else if (!args.includes('--help')) {
        if (role === undefined) throw new UsageError('which role? oak install worker|cluster|root|full|cli', { hint: 'oak install --help' });
        file = findCheckoutArtifact(PROGRAM_OF[role]);
        if (file === undefined) throw new UsageError(`no artifact of oak-${PROGRAM_OF[role]} for linux-${ARCH} found`, { hint: 'give --artifact <file>, or run `make dist` in the checkout first' });
      }
      if (file === undefined) return print(runInstaller(args, { names: NAMES }));
      if (!existsSync(file)) throw new UsageError(`${file} does not exist`, { hint: 'give the path of a downloaded or copied artifact' });
      const m = ARTIFACT_RE.exec(basename(file));
      if (!m) throw new UsageError(`${basename(file)} is not named like an artifact (oak-<program>-<version>-linux-<arch>.tar.gz)`, { hint: 'use the file as `make dist` wrote it' });
      const note = checkSum(file);
      if (note !== undefined) process.stderr.write(`oak: ${note}\n`);
      const tmp = mkdtempSync(join(tmpdir(), 'oak-install-'));
      try {
        execFileSync('tar', ['-xzf', resolve(file), '-C', tmp, '--no-same-owner'], { stdio: ['ignore', 'ignore', 'pipe'] });
        const dir = join(tmp, basename(file).replace(/\.tar\.gz$/, ''));
        if (!existsSync(join(dir, 'oak-release.json'))) throw new CliError(`${file} holds no ${basename(dir)}/oak-release.json`, { hint: 'the file is not an oak artifact' });
        print(runInstaller(args, { artifactDir: dir, names: NAMES }));
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    });
  program
    .command('uninstall')
    .description('remove what oak install put on this machine (the data dir stays unless --purge)')
    .argument('[args...]', 'role and options: oak uninstall --help')
    .helpOption(false)
    .allowUnknownOption()
    .action((_args: string[], _opts: unknown, cmd: Command) => {
      print(runInstaller(['uninstall', ...rawArgsAfter(cmd, 'uninstall')], { names: NAMES }));
    });
}
