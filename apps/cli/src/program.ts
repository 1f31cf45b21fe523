/** The `oak` command tree. Definitions only: each command group lives in its own module. */
import { Command, Option } from 'commander';
import { registerApp } from './commands/app.ts';
import { registerAudit } from './commands/audit.ts';
import { registerAuth } from './commands/auth.ts';
import { registerCluster } from './commands/cluster.ts';
import { registerConfig } from './commands/config.ts';
import { registerDoctor } from './commands/doctor.ts';
import { registerEvents } from './commands/events.ts';
import { registerFleet } from './commands/fleet.ts';
import { registerInstall } from './commands/install.ts';
import { registerInstance, registerService } from './commands/service.ts';
import { registerToken } from './commands/token.ts';
import { registerRegistry } from './commands/registry.ts';
import { registerUp } from './commands/up.ts';
import { registerUser } from './commands/user.ts';
import { registerValidate } from './commands/validate.ts';
import { OUTPUT_FORMATS } from './config.ts';

export const VERSION = '0.1.0';

export function buildProgram(): Command {
  const program = new Command('oak');
  program
    .description('oak: run applications on an edge-to-cloud orchestrator (Oakestra-compatible)')
    .version(VERSION, '-V, --version', 'print the version')
    .addOption(new Option('--root <url>', 'root REST API (env OAK_ROOT_URL; oak config set root_url; default http://127.0.0.1:10000)'))
    .addOption(new Option('--ca-file <pem>', 'verify an https root against this CA only (env OAK_CA_FILE; else the CA pinned at the first login)'))
    .addOption(new Option('-o, --output <format>', 'table, json or yaml (env OAK_OUTPUT; oak config set output)').choices(OUTPUT_FORMATS))
    .option('--no-color', 'no colours (also: NO_COLOR, or when not a terminal)')
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(text.replace(/^error: /, 'oak: ')) })
    .addHelpText(
      'after',
      `
Examples:
  $ oak up                                     # 1-DOC: root + cluster + worker here
  $ oak login                                  # user Admin, password from the root's first start
  $ oak app create -f examples/web-server.json --wait
  $ oak instance ls
  $ oak service logs webdemo.web -f

Exit codes: 0 ok, 1 failure (the root said no, an instance failed, no root), 2 usage error.
Docs: docs/cli.md`,
    );
  registerAuth(program);
  registerConfig(program);
  registerApp(program);
  registerService(program);
  registerInstance(program);
  registerCluster(program);
  registerToken(program);
  registerRegistry(program);
  registerValidate(program);
  registerEvents(program);
  registerUp(program);
  registerDoctor(program);
  registerUser(program);
  registerAudit(program);
  registerInstall(program);
  registerFleet(program);
  return program;
}
