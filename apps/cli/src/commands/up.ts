/** `oak up`: the 1-DOC (root + cluster + worker in one process), exactly what `make up` runs. */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { CliError } from '../errors.ts';

/**
 * apps/oakd, next to apps/cli in the repository: three levels up from apps/cli/src/commands/up.ts,
 * two from the bundle apps/cli/dist/oak.mjs. The first that holds oakd wins (the sources' path when
 * neither does, for the message).
 */
export function oakdPaths(): { bin: string; main: string } {
  const at = (up: string): { bin: string; main: string } => ({
    bin: fileURLToPath(new URL(`${up}oakd/bin/oakd.mjs`, import.meta.url)),
    main: fileURLToPath(new URL(`${up}oakd/src/main.ts`, import.meta.url)),
  });
  const candidates = [at('../../../'), at('../../')];
  return candidates.find((c) => existsSync(c.bin) && existsSync(c.main)) ?? (candidates[0] as { bin: string; main: string });
}

export function registerUp(program: Command): void {
  program
    .command('up')
    .description('run the 1-DOC: root, cluster and worker in one process, no Docker (same as make up)')
    .argument('[oakd-args...]', 'passed to oakd unchanged (see oak up -- --help)')
    .allowUnknownOption()
    .addHelpText(
      'after',
      `
Everything after "up" goes to oakd: its flags choose ports, the data directory and more.
It runs in the foreground; Ctrl-C stops it. 'make up' also installs the system packages first.
OAK_OAKD_BIN runs another oakd launcher than the one of this repository.

Examples:
  $ oak up
  $ OAK_ADMIN_PASSWORD='pick-a-good-one' oak up     # 8 characters or more
  $ oak up -- --help`,
    )
    .action(async (args: string[], _opts: unknown, _cmd: Command) => {
      const override = process.env.OAK_OAKD_BIN;
      const { bin, main } = override !== undefined && override !== '' ? { bin: override, main: override } : oakdPaths();
      if (!existsSync(bin) || !existsSync(main)) {
        throw new CliError(`the 1-DOC (oakd) is not part of this installation yet (looked for ${bin})`, {
          hint: 'start the parts yourself: oak-root, then oak-cluster and NodeEngine (see docs/cli.md)',
        });
      }
      const child = spawn(process.execPath, [bin, ...args], { stdio: 'inherit' });
      const forward = (sig: NodeJS.Signals): void => {
        child.kill(sig);
      };
      process.on('SIGINT', forward);
      process.on('SIGTERM', forward);
      const code = await new Promise<number>((resolve) => {
        child.once('error', (err) => {
          process.stderr.write(`oak: cannot start oakd: ${err.message}\n`);
          resolve(1);
        });
        child.once('exit', (c, signal) => resolve(c ?? (signal === 'SIGINT' || signal === 'SIGTERM' ? 0 : 1)));
      });
      process.removeListener('SIGINT', forward);
      process.removeListener('SIGTERM', forward);
      process.exitCode = code;
    });
}
