/**
 * A private OCI registry (Debian's `docker-registry`, Distribution 2.8) on 127.0.0.1 with its own
 * config and a temp storage directory. Plain HTTP: pull with `--plain-http`, push with
 * `skopeo copy --dest-tls-verify=false`.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, spawnDaemon, stopProcess, tmpDir, waitFor } from './util.ts';

export interface RegistryInstance {
  /** `127.0.0.1:<port>` (no scheme), to prefix image references with */
  url: string;
  port: number;
  /** temp dir holding the config and the storage */
  dir: string;
  stop(): Promise<void>;
}

export async function startRegistry(opts: { timeoutMs?: number } = {}): Promise<RegistryInstance> {
  const dir = await tmpDir('oak-registry');
  let lastErr: unknown;
  // the port may be taken between freePort() and the registry's bind: retry a few times
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const configPath = join(dir.path, 'config.yml');
    await writeFile(configPath, [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir.path, 'data')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'));
    const { child, output } = spawnDaemon('docker-registry', ['serve', configPath]);
    let exited = false;
    child.on('exit', () => { exited = true; });
    try {
      await waitFor(async () => {
        if (exited) throw new Error(`docker-registry exited: ${output().slice(-1000)}`);
        const res = await fetch(`http://127.0.0.1:${port}/v2/`);
        return res.status === 200;
      }, { timeoutMs: opts.timeoutMs ?? 10_000, intervalMs: 25, message: `registry on 127.0.0.1:${port}` });
    } catch (err) {
      lastErr = err;
      await stopProcess(child, 2000);
      if (exited && /address already in use/i.test(output())) continue;
      break;
    }
    let stopped = false;
    return {
      url: `127.0.0.1:${port}`,
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
  throw lastErr instanceof Error ? lastErr : new Error('registry did not start');
}
