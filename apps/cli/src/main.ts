/**
 * Entry point of `oak`: parses the command line, runs the command, and turns every failure into
 * a short message and an exit code (0 ok, 1 failure, 2 usage error). Stack traces only with
 * OAK_DEBUG=1.
 */
import { CommanderError, type Command } from 'commander';
import { chooseOutput, configPath, loadConfig, type OutputFormat } from './config.ts';
import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, isServerError } from './errors.ts';
import { createUi, printError, type Ui } from './output.ts';
import { buildProgram } from './program.ts';

/** The output format for error messages, without failing on a bad config or flag. */
function fallbackUi(argv: string[]): Ui {
  let format: OutputFormat = 'table';
  const k = argv.findIndex((a) => a === '-o' || a === '--output');
  const flag = k !== -1 ? argv[k + 1] : argv.find((a) => a.startsWith('--output='))?.slice(9);
  try {
    format = chooseOutput(flag, loadConfig(configPath()));
  } catch {
    // keep table
  }
  return createUi({ format, color: !argv.includes('--no-color') });
}

/** The deepest command named on the command line, for "see oak app create --help". */
function commandPath(program: Command, argv: string[]): string {
  const names = ['oak'];
  let cmd: Command | undefined = program;
  for (const a of argv) {
    if (a.startsWith('-')) continue;
    const next: Command | undefined = cmd?.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (!next) break;
    names.push(next.name());
    cmd = next;
  }
  return names.join(' ');
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) return EXIT_OK;
      if (err.code !== 'commander.help' && err.code !== 'commander.executeSubCommandAsync') {
        process.stderr.write(`  see '${commandPath(program, argv)} --help'\n`);
      }
      return EXIT_USAGE;
    }
    const ui = fallbackUi(argv);
    if (process.env.OAK_DEBUG === '1' && err instanceof Error) process.stderr.write(`${err.stack ?? err.message}\n`);
    if (err instanceof CliError) {
      if (!('printed' in err && err.printed === true)) printError(ui, err);
      return err.exitCode;
    }
    if (isServerError(err)) {
      printError(ui, err);
      return EXIT_FAILURE;
    }
    const msg = err instanceof Error ? err.message : String(err);
    ui.err(`oak: unexpected failure: ${msg}`);
    ui.err('  hint: run again with OAK_DEBUG=1 for details, and report it');
    return EXIT_FAILURE;
  }
}

process.exit(await main(process.argv.slice(2)));
