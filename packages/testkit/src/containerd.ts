/**
 * A private containerd for tests: own config, root, state and socket in a temp dir, so tests never
 * touch a containerd the machine may already run. `stop()` cleans up in the order that leaves no
 * leftovers (see /work/shared/RECIPES.md): tasks killed and deleted, containers removed, containerd
 * stopped, shims of this instance killed, mounts under the temp dir unmounted, runc state and cgroups
 * of the namespaces used removed, temp dir removed.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, rmdirSync, existsSync } from 'node:fs';
import { writeFile, mkdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { onProcessExit, run, runSyncQuiet, shortId, spawnDaemon, stopProcess, tmpDir, waitFor } from './util.ts';

export interface StartContainerdOptions {
  /** containerd namespace handed to the test (default `oaktest-<random>`); a fresh one per run */
  namespace?: string;
  /** readiness timeout, default 15000 ms */
  timeoutMs?: number;
  /** extra TOML appended to the config */
  extraConfig?: string;
}

export interface ContainerdInstance {
  /** path of the gRPC unix socket (use as `ctr -a <socket>` or `unix://<socket>`) */
  socket: string;
  root: string;
  state: string;
  /** the fresh namespace this run should use */
  namespace: string;
  /** temp dir holding config, root, state and socket */
  dir: string;
  /** runs `ctr -a <socket> -n <namespace> ...args` */
  ctr(args: string[], opts?: { namespace?: string; check?: boolean }): Promise<{ stdout: string; stderr: string; code: number }>;
  /** cleans up everything (idempotent) */
  stop(): Promise<void>;
}

const SHIM = 'containerd-shim-runc-v2';

export async function startContainerd(opts: StartContainerdOptions = {}): Promise<ContainerdInstance> {
  const dir = await tmpDir('oak-ctd');
  const root = join(dir.path, 'root');
  const state = join(dir.path, 'state');
  const socket = join(dir.path, 'containerd.sock');
  const namespace = opts.namespace ?? `oaktest-${shortId(4)}`;
  await mkdir(root, { recursive: true });
  await mkdir(state, { recursive: true });
  const config = [
    'version = 2',
    `root = ${JSON.stringify(root)}`,
    `state = ${JSON.stringify(state)}`,
    // the CRI plugin would open ports and look for CNI; tests use the containerd API only
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = ${JSON.stringify(socket)}`,
    '[ttrpc]',
    `  address = ${JSON.stringify(`${socket}.ttrpc`)}`,
    '[plugins]',
    '  [plugins."io.containerd.internal.v1.opt"]',
    `    path = ${JSON.stringify(join(dir.path, 'opt'))}`,
    opts.extraConfig ?? '',
    '',
  ].join('\n');
  const configPath = join(dir.path, 'config.toml');
  await writeFile(configPath, config);

  const { child, output } = spawnDaemon('containerd', ['--config', configPath, '--log-level', 'warn']);
  let exitedEarly = false;
  child.on('exit', () => { exitedEarly = true; });

  let stopped = false;
  const namespacesSeen = new Set<string>([namespace]);

  const ctr = (args: string[], o: { namespace?: string; check?: boolean } = {}): Promise<{ stdout: string; stderr: string; code: number }> =>
    run('ctr', ['-a', socket, '-n', o.namespace ?? namespace, ...args], { check: o.check ?? true, timeoutMs: 30_000 });

  const syncCleanup = (): void => {
    // exit-time fallback: same order, synchronously, best effort
    const nss = runSyncQuiet('ctr', ['-a', socket, 'namespaces', 'ls', '-q']).split('\n').filter(Boolean);
    for (const ns of nss) {
      namespacesSeen.add(ns);
      for (const id of runSyncQuiet('ctr', ['-a', socket, '-n', ns, 'tasks', 'ls', '-q']).split('\n').filter(Boolean)) {
        runSyncQuiet('ctr', ['-a', socket, '-n', ns, 'tasks', 'kill', '-a', '-s', 'SIGKILL', id]);
        runSyncQuiet('ctr', ['-a', socket, '-n', ns, 'tasks', 'delete', '-f', id]);
      }
      for (const id of runSyncQuiet('ctr', ['-a', socket, '-n', ns, 'containers', 'ls', '-q']).split('\n').filter(Boolean)) {
        runSyncQuiet('ctr', ['-a', socket, '-n', ns, 'containers', 'rm', id]);
      }
    }
    try { child.kill('SIGKILL'); } catch { /* gone */ }
    killShims(socket);
    unmountUnder(dir.path);
    removeRuncLeftovers(namespacesSeen);
    rmSync(dir.path, { recursive: true, force: true });
  };
  const unregister = onProcessExit(syncCleanup);

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    try {
      if (!exitedEarly) await cleanupNamespaces(ctr, namespacesSeen);
    } catch {
      /* containerd unreachable: the steps below still free everything */
    }
    await stopProcess(child, 5000);
    killShims(socket);
    unmountUnder(dir.path);
    removeRuncLeftovers(namespacesSeen);
    await dir.remove();
    unregister();
  };

  try {
    await waitFor(async () => {
      if (exitedEarly) throw new Error(`containerd exited: ${output().slice(-2000)}`);
      return canConnect(socket);
    }, { timeoutMs: opts.timeoutMs ?? 15_000, intervalMs: 25, message: `containerd socket ${socket}` });
  } catch (err) {
    await stop();
    throw err;
  }

  return { socket, root, state, namespace, dir: dir.path, ctr, stop };
}

async function cleanupNamespaces(
  ctr: (args: string[], o?: { namespace?: string; check?: boolean }) => Promise<{ stdout: string }>,
  seen: Set<string>,
): Promise<void> {
  const lines = (r: { stdout: string }): string[] => r.stdout.split('\n').map((s) => s.trim()).filter(Boolean);
  for (const ns of lines(await ctr(['namespaces', 'ls', '-q']))) seen.add(ns);
  for (const ns of seen) {
    const tasks = lines(await ctr(['tasks', 'ls', '-q'], { namespace: ns, check: false }));
    await Promise.all(tasks.map((id) => ctr(['tasks', 'kill', '-a', '-s', 'SIGKILL', id], { namespace: ns, check: false })));
    // `tasks delete -f` waits for the killed process and removes the task
    await Promise.all(tasks.map((id) => ctr(['tasks', 'delete', '-f', id], { namespace: ns, check: false })));
    const containers = lines(await ctr(['containers', 'ls', '-q'], { namespace: ns, check: false }));
    await Promise.all(containers.map((id) => ctr(['containers', 'rm', id], { namespace: ns, check: false })));
  }
}

/** true when something accepts connections on the unix socket */
export function canConnect(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socket);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** kills every runc v2 shim started by the containerd listening on `socket`, and removes its socket */
function killShims(socket: string): void {
  for (const pid of safeReaddir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!argv[0]?.endsWith(SHIM)) continue;
    const arg = (name: string): string | undefined => {
      const i = argv.indexOf(name);
      return i >= 0 ? argv[i + 1] : undefined;
    };
    if (arg('-address') !== socket) continue;
    try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
    const ns = arg('-namespace');
    const id = arg('-id');
    if (ns && id) {
      // containerd 1.6 puts shim sockets at /run/containerd/s/<sha256(address/ns/id)>
      const hash = createHash('sha256').update(join(socket, ns, id)).digest('hex');
      rmSync(`/run/containerd/s/${hash}`, { force: true });
    }
  }
}

/** lazily unmounts every mount point below `dir`, deepest first */
export function unmountUnder(dir: string): void {
  let mountinfo = '';
  try { mountinfo = readFileSync('/proc/self/mountinfo', 'utf8'); } catch { return; }
  const points = mountinfo
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)))
    .map((p) => p.replace(/\\040/g, ' '))
    .sort((a, b) => b.length - a.length);
  for (const p of points) runSyncQuiet('umount', ['-l', p]);
}

/** runc keeps state under /run/containerd/runc/<ns> and cgroups under /<ns>/<id> even for a private containerd */
function removeRuncLeftovers(namespaces: Set<string>): void {
  for (const ns of namespaces) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(ns)) continue;
    rmSync(`/run/containerd/runc/${ns}`, { recursive: true, force: true });
    for (const ctl of safeReaddir('/sys/fs/cgroup')) {
      const base = join('/sys/fs/cgroup', ctl, ns);
      if (!existsSync(base)) continue;
      for (const sub of safeReaddir(base)) {
        try { rmdirSync(join(base, sub)); } catch { /* busy or a file */ }
      }
      try { rmdirSync(base); } catch { /* busy */ }
    }
  }
}

function safeReaddir(p: string): string[] {
  try {
    return readdirSync(p);
  } catch {
    return [];
  }
}
