/**
 * `NodeEngine` command: parses the flags, starts the engine, stops it on SIGINT/SIGTERM (instances
 * keep running and are re-adopted at the next start).
 */
import { parseFlags } from './flags.ts';
import { startNodeEngine } from './engine.ts';

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

const cfg = parsed.config;
console.log(`[NodeEngine] cluster ${cfg.clusterAddress}:${cfg.clusterPort}, data dir ${cfg.dataDir}, NetManager ${cfg.netmanagerPort ?? 'none'}`);
try {
  handle = await startNodeEngine(cfg, { signal: abort.signal });
  console.log(`[NodeEngine] running as node ${handle.id} (${handle.virtualizations.join(', ')})`);
} catch (err) {
  if (!stopping) {
    console.error(`[NodeEngine] could not start: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
