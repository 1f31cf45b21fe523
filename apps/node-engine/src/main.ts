/**
 * `NodeEngine` command: parses the flags, starts the engine, stops it on SIGINT/SIGTERM (instances
 * keep running and are re-adopted at the next start).
 */
import { execFile, spawn } from 'node:child_process';
import { parseFlags } from './flags.ts';
import { startNodeEngine } from './engine.ts';
import { detectLayout, type InstallLayout, type SelfUpgradeDeps } from './upgrade.ts';

const parsed = parseFlags(process.argv.slice(2));
if (parsed.kind === 'help') {
  process.stdout.write(parsed.text);
  process.exit(0);
}
if (parsed.kind === 'error') {
  process.stderr.write(`NodeEngine: ${parsed.message}\n`);
  process.exit(2);
}

const abort = new AbortController();
let handle: Awaited<ReturnType<typeof startNodeEngine>> | undefined;
let stopping = false;
const stop = (signal: string): void => {
  if (stopping) {
    process.exit(130);
  }
  stopping = true;
  console.log(`[NodeEngine] ${signal}: stopping (instances keep running)`);
  abort.abort(new Error(signal));
  void (handle?.close() ?? Promise.resolve()).finally(() => process.exit(0));
};
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));

/**
 * Fleet upgrades (issue 14): after the installer switched the install to another version, this
 * NodeEngine stops (its instances keep running) and the new version starts: under systemd by a
 * restart of its units, otherwise by running the same command line again (the `current` link now
 * names the new version), in the same process group and with the same output.
 */
const restartSelf = async (layout: InstallLayout): Promise<void> => {
  if (layout.systemd && layout.prefix === '/') {
    // --no-block: systemd stops us (SIGTERM) and starts the new version after this returns
    const units = layout.units.length > 0 ? layout.units : ['oak-worker.service'];
    await new Promise<void>((resolve, reject) => execFile('systemctl', ['restart', '--no-block', ...units], (err) => (err ? reject(err) : resolve())));
    return;
  }
  stopping = true;
  console.log('[NodeEngine] restarting into the new version (instances keep running)');
  await (handle?.close() ?? Promise.resolve());
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: process.env });
  child.unref();
  process.exit(0);
};
const found = detectLayout(process.argv[1]);
const selfUpgrade: SelfUpgradeDeps = 'layout' in found ? { layout: found.layout, blocker: undefined, restart: restartSelf } : { layout: undefined, blocker: found.blocker, restart: restartSelf };

const cfg = parsed.config;
console.log(`[NodeEngine] cluster ${cfg.clusterAddress}:${cfg.clusterPort}, data dir ${cfg.dataDir}, NetManager ${cfg.netmanagerPort ?? 'none'}`);
try {
  handle = await startNodeEngine(cfg, { signal: abort.signal, selfUpgrade });
  console.log(`[NodeEngine] running as node ${handle.id} (${handle.virtualizations.join(', ')})`);
} catch (err) {
  if (!stopping) {
    console.error(`[NodeEngine] could not start: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
