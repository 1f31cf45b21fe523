/**
 * A private OCI registry (Debian's `docker-registry`, Distribution 2.8) on 127.0.0.1 with its own
 * config and a temp storage directory. Plain HTTP: pull with `--plain-http`, push with
 * `skopeo copy --dest-tls-verify=false`. With `auth`, the registry wants HTTP basic auth
 * (htpasswd with a bcrypt line made by `htpasswd -B` of apache2-utils); push with
 * `buildBusyboxImage(reg, { creds })`.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, run, spawnDaemon, stopProcess, tmpDir, waitFor } from './util.ts';

export interface RegistryInstance {
  /** `127.0.0.1:<port>` (no scheme), to prefix image references with */
  url: string;
  port: number;
  /** temp dir holding the config and the storage */
  dir: string;
  /** the login, when started with `auth` */
  auth?: { username: string; password: string };
  stop(): Promise<void>;
}

export async function startRegistry(opts: { timeoutMs?: number; auth?: { username: string; password: string } } = {}): Promise<RegistryInstance> {
  const dir = await tmpDir('oak-registry');
  const auth = opts.auth;
  const htpasswd = join(dir.path, 'htpasswd');
  if (auth) {
    const line = await run('htpasswd', ['-niB', auth.username], { input: `${auth.password}\n`, timeoutMs: 30_000 });
    await writeFile(htpasswd, line.stdout.trim() + '\n', { mode: 0o600 });
  }
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
      ...(auth ? ['auth:', '  htpasswd:', '    realm: oak-test', `    path: ${htpasswd}`] : []),
      '',
    ].join('\n'));
    const { child, output } = spawnDaemon('docker-registry', ['serve', configPath]);
    let exited = false;
    child.on('exit', () => { exited = true; });
    try {
      await waitFor(async () => {
        if (exited) throw new Error(`docker-registry exited: ${output().slice(-1000)}`);
        const res = await fetch(`http://127.0.0.1:${port}/v2/`);
        return res.status === (auth ? 401 : 200);
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
      ...(auth ? { auth: { ...auth } } : {}),
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
