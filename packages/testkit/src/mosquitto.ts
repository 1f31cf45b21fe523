/**
 * A private Mosquitto broker on 127.0.0.1 and a free port, with its own config file (never the
 * machine's broker on 1883). Extra config lines (ACLs, password files, TLS listeners) can be added.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { canConnectTcp } from './net-util.ts';
import { freePort, spawnDaemon, stopProcess, tmpDir, waitFor } from './util.ts';

export interface StartMosquittoOptions {
  /** appended to the generated config (after `listener` and `allow_anonymous true`) */
  extraConfig?: string;
  /** default true; set false together with a `password_file` in extraConfig */
  allowAnonymous?: boolean;
  timeoutMs?: number;
}

export interface MosquittoInstance {
  /** `mqtt://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** temp dir holding the config (put ACL or password files here) */
  dir: string;
  stop(): Promise<void>;
}

export async function startMosquitto(opts: StartMosquittoOptions = {}): Promise<MosquittoInstance> {
  const dir = await tmpDir('oak-mosquitto');
  let lastErr: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const configPath = join(dir.path, 'mosquitto.conf');
    await writeFile(configPath, [
      'per_listener_settings false',
      `listener ${port} 127.0.0.1`,
      `allow_anonymous ${opts.allowAnonymous === false ? 'false' : 'true'}`,
      'persistence false',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      // root would drop to user mosquitto; stay root so files in the temp dir stay readable
      'user root',
      opts.extraConfig ?? '',
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
