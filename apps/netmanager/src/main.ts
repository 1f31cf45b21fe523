/**
 * NetManager: the overlay network of one worker (SPEC §8). `NetManager -p 6000 -c /etc/netmanager/netcfg.json`;
 * `--clean` removes everything it made and exits. Bad settings exit 2 with the key named.
 * SIGTERM/SIGINT stop it and leave the kernel state (a restart adopts it; flows keep running).
 */
import { readFileSync } from 'node:fs';
import { consoleLogger } from '@oak/bus';
import { ConfigError, NETMANAGER_VERSION, fallbackBrokerUrl, parseCli, usage } from './config.ts';
import { readUpstreams } from '@oak/net';
import type { NetManagerSettings } from './config.ts';
import { cleanNetManager, startNetManager } from './netmanager.ts';

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

let settings: NetManagerSettings;
try {
  settings = parseCli(process.argv.slice(2), process.env, readOptional);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`NetManager: ${err.message}${err.hint !== undefined ? `\n  hint: ${err.hint}` : ''}\n`);
    process.exit(2);
  }
  throw err;
}
if (settings.help) {
  process.stdout.write(usage());
  process.exit(0);
}
if (settings.version) {
  process.stdout.write(`NetManager ${NETMANAGER_VERSION}\n`);
  process.exit(0);
}
const log = consoleLogger('NetManager', settings.logLevel);
if (settings.clean) {
  try {
    await cleanNetManager({ dataDir: settings.dataDir, keyDir: settings.keyDir, port: settings.port, publicAddress: settings.publicAddress || '127.0.0.1', publicPort: settings.publicPort, log });
    log.info('everything this NetManager made is removed');
    process.exit(0);
  } catch (err) {
    log.error(`--clean failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
const upstreams = settings.upstreams ?? readUpstreams(readOptional('/etc/resolv.conf') ?? '');
const fallback = fallbackBrokerUrl(settings);
// the signals are taken before the start: the key file (what a supervisor waits for) is written
// during it, and a SIGTERM then must stop it cleanly, not kill it with the key left behind
let stopping: string | undefined;
let stopNow: ((sig: string) => void) | undefined;
const onSignal = (sig: string): void => {
  if (stopNow) stopNow(sig);
  else stopping ??= sig;
};
process.on('SIGTERM', () => onSignal('SIGTERM'));
process.on('SIGINT', () => onSignal('SIGINT'));
try {
  const nm = await startNetManager({
    port: settings.port,
    keyDir: settings.keyDir,
    dataDir: settings.dataDir,
    publicAddress: settings.publicAddress,
    publicPort: settings.publicPort,
    ...(fallback !== undefined ? { fallbackMqttUrl: fallback } : {}),
    dns: settings.dns,
    upstreams,
    probeIntervalMs: settings.probeIntervalMs,
    log,
  });
  log.info(`NetManager ${NETMANAGER_VERSION} on 127.0.0.1:${nm.port}, tunnel endpoint ${settings.publicAddress}:${settings.publicPort}, data dir ${settings.dataDir}`);
  let stopped = false;
  stopNow = (sig: string): void => {
    if (stopped) return;
    stopped = true;
    log.info(`${sig}: stopping (the datapath stays for the next start)`);
    nm.close().then(() => process.exit(0), (err: unknown) => {
      log.error(`stop failed: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    });
  };
  // a signal that came during the start
  if (stopping !== undefined) stopNow(stopping);
} catch (err) {
  log.error(`NetManager could not start: ${err instanceof Error ? err.message : String(err)}`);
  const hint = (err as { hint?: unknown }).hint;
  if (typeof hint === 'string') log.error(`hint: ${hint}`);
  process.exit(1);
}
