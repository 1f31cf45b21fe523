/**
 * oak-install.mjs, the installer inside every release artifact: `install.sh` runs it with
 * `--artifact-dir <its directory>` and the user's arguments (see cli.ts). Node built-ins only, so
 * it runs before anything of the artifact is in place.
 */
import { runInstaller } from './cli.ts';

const out = runInstaller(process.argv.slice(2));
process.stdout.write(out.stdout);
process.stderr.write(out.stderr);
process.exitCode = out.code;
