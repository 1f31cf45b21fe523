/**
 * A private Mosquitto broker on 127.0.0.1 and a free port, with its own config file (never the
 * machine's broker on 1883). Extra config lines (ACLs, password files, TLS listeners) can be added.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { canConnectTcp } from './net-util.ts';
import { freePort, spawnDaemon, stopProcess, tmpDir, waitFor } from './util.ts';

export interface StartMosquittoOptions {
  /** appended to the generated config (after `listener` and `allow_anonymous true`) */
  extraConfig?: string;
  /** default true; set false together with a `password_file` in extraConfig */
  allowAnonymous?: boolean;
  timeoutMs?: number;
  /**
   * load the dynamic-security plugin (Debian's mosquitto package) with a fresh config holding this
   * admin client; anonymous clients are then refused
   */
  dynsec?: { adminUser: string; adminPassword: string };
  /** an extra MQTT-over-TLS listener (PEM texts); its port is `tlsPort` */
  tls?: { cert: string; key: string };
}

export const DYNSEC_PLUGIN = '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so';

export interface MosquittoInstance {
  /** `mqtt://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** temp dir holding the config (put ACL or password files here) */
  dir: string;
  /** `mqtts://127.0.0.1:<tlsPort>` when started with `tls` */
  tlsUrl?: string;
  tlsPort?: number;
  /** with dynsec: `mqtt://<admin>:<password>@127.0.0.1:<port>` */
  adminUrl?: string;
  stop(): Promise<void>;
}

export async function startMosquitto(opts: StartMosquittoOptions = {}): Promise<MosquittoInstance> {
  const dir = await tmpDir('oak-mosquitto');
  const extra: string[] = [];
  if (opts.dynsec) {
    const file = join(dir.path, 'dynamic-security.json');
    await promisify(execFile)('mosquitto_ctrl', ['dynsec', 'init', file, opts.dynsec.adminUser, opts.dynsec.adminPassword]);
    extra.push(`plugin ${DYNSEC_PLUGIN}`, `plugin_opt_config_file ${file}`);
  }
  let tlsPort: number | undefined;
  if (opts.tls) {
    await writeFile(join(dir.path, 'tls.crt'), opts.tls.cert);
    await writeFile(join(dir.path, 'tls.key'), opts.tls.key, { mode: 0o600 });
  }
  let lastErr: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const tlsLines: string[] = [];
    if (opts.tls) {
      tlsPort = await freePort();
      tlsLines.push(`listener ${tlsPort} 127.0.0.1`, `certfile ${join(dir.path, 'tls.crt')}`, `keyfile ${join(dir.path, 'tls.key')}`);
    }
    const configPath = join(dir.path, 'mosquitto.conf');
    await writeFile(configPath, [
      'per_listener_settings false',
      `listener ${port} 127.0.0.1`,
      `allow_anonymous ${opts.allowAnonymous === false || opts.dynsec ? 'false' : 'true'}`,
      'persistence false',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      // root would drop to user mosquitto; stay root so files in the temp dir stay readable
      'user root',
      ...extra,
      opts.extraConfig ?? '',
      ...tlsLines,
      '',
    ].join('\n'));
    const { child, output } = spawnDaemon('mosquitto', ['-c', configPath]);
    let exited = false;
    child.on('exit', () => { exited = true; });
    try {
      await waitFor(async () => {
        if (exited) throw new Error(`mosquitto exited: ${output().slice(-1000)}`);
        return canConnectTcp('127.0.0.1', port);
      }, { timeoutMs: opts.timeoutMs ?? 10_000, intervalMs: 25, message: `mosquitto on 127.0.0.1:${port}` });
    } catch (err) {
      lastErr = err;
      await stopProcess(child, 2000);
      if (exited && /address already in use/i.test(output())) continue;
      break;
    }
    let stopped = false;
    return {
      url: `mqtt://127.0.0.1:${port}`,
      port,
      dir: dir.path,
      ...(tlsPort !== undefined ? { tlsPort, tlsUrl: `mqtts://127.0.0.1:${tlsPort}` } : {}),
      ...(opts.dynsec ? { adminUrl: `mqtt://${encodeURIComponent(opts.dynsec.adminUser)}:${encodeURIComponent(opts.dynsec.adminPassword)}@127.0.0.1:${port}` } : {}),
      stop: async () => {
        if (stopped) return;
        stopped = true;
        await stopProcess(child, 3000);
        await dir.remove();
      },
    };
  }
  await dir.remove();
  throw lastErr instanceof Error ? lastErr : new Error('mosquitto did not start');
}
