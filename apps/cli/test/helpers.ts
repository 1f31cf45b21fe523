/**
 * Test helpers: a real root (startRoot on 127.0.0.1, a free port, a temporary data dir) and the
 * real `oak` binary run as a child process with its own HOME and config file.
 *
 * Without clusters a root leaves instances REQUESTED. For the CLI's --wait, logs and failure
 * paths the root here can be given a scripted control plane (`FakeCluster`), which moves
 * instances through the lifecycle the way a cluster would: that is failure injection on the
 * cluster side, the root and the CLI stay real. The 1-DOC test (oakd) covers the real thing.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OakError } from '@oak/contracts';
import type { InstanceState, OakEvent } from '@oak/contracts';
import { instanceDoc, startRoot, type ControlPlane, type LogOptions, type RootContext, type RootHandle } from '@oak/root';
import type { InstanceRow, ServiceRow } from '@oak/store';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
/** newest modification time (ms) of the files below `dir` (0 when it is absent) */
function newest(dir: string): number {
  let max = 0;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const n of names) {
    const p = join(dir, n);
    const st = statSync(p);
    max = Math.max(max, st.isDirectory() ? newest(p) : st.mtimeMs);
  }
  return max;
}

/**
 * The `oak` the tests run: the built bundle (what users run, and it starts in half the time of the
 * tsx launcher: the CLI suites spawn it hundreds of times) when it is newer than every source it is
 * built from; else the launcher on the sources, so that a test run right after an edit never tests a
 * stale bundle. OAK_CLI_TEST_BIN=src|dist forces one.
 */
function pickOakBin(): string {
  const dist = join(repoRoot, 'apps/cli/dist/oak.mjs');
  const src = join(repoRoot, 'apps/cli/bin/oak.mjs');
  const forced = process.env.OAK_CLI_TEST_BIN;
  if (forced === 'src') return src;
  if (forced === 'dist') return dist;
  let built: number;
  try {
    built = statSync(dist).mtimeMs;
  } catch {
    return src;
  }
  const sources = [join(repoRoot, 'apps/cli/src'), ...readdirSync(join(repoRoot, 'packages')).map((p) => join(repoRoot, 'packages', p, 'src'))];
  return sources.every((d) => newest(d) <= built) ? dist : src;
}
export const oakBin = pickOakBin();
export const fixture = (name: string): string => join(repoRoot, 'apps/cli/test/fixtures', name);
export const example = (name: string): string => join(repoRoot, 'examples', name);
export const ADMIN_PASSWORD = 'cli-test-secret';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  stdin?: string;
  timeoutMs?: number;
  /** resolves when this text appears on stdout; the process is then left running (see `onStarted`) */
  cwd?: string;
}

/** A place for the CLI's HOME and config file. */
export class CliHome {
  readonly dir = mkdtempSync(join(tmpdir(), 'oak-cli-'));
  readonly configPath = join(this.dir, 'config', 'oak', 'config.json');

  env(extra: Record<string, string | undefined> = {}): Record<string, string> {
    const base: Record<string, string | undefined> = { ...process.env };
    for (const k of ['OAK_ROOT_URL', 'OAK_OUTPUT', 'OAK_TOKEN', 'OAK_PASSWORD', 'OAK_USER', 'FORCE_COLOR', 'OAK_DEBUG', 'XDG_CONFIG_HOME', 'MQTT_URL']) delete base[k];
    // the runner's own: node's test context, and extra CAs of the machine (node reads that file at
    // every start, about 45 ms of each of the hundreds of runs; the tests' roots have their own CAs)
    for (const k of ['NODE_TEST_CONTEXT', 'NODE_EXTRA_CA_CERTS']) delete base[k];
    const env: Record<string, string | undefined> = { ...base, HOME: this.dir, OAK_CONFIG: this.configPath, NO_COLOR: '1', ...extra };
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
    return out;
  }

  run(args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return runOak(args, { ...opts, env: this.env(opts.env) });
  }

  /** starts `oak` and hands back the process (for streams); the caller kills it */
  start(args: string[], opts: RunOptions = {}): RunningOak {
    return startOak(args, { ...opts, env: this.env(opts.env) });
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * How many `oak` runs of one test file are under way at once: the tests start independent runs
 * together (Promise.all), this keeps them from crowding the machine (each start is CPU-bound, about
 * a quarter second). Streams (`start`) are not counted: they live until the test ends them.
 */
const RUNS_AT_ONCE = Math.max(1, Number(process.env.OAK_CLI_TEST_PARALLEL ?? 4));
let running = 0;
const queued: (() => void)[] = [];

export async function runOak(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  if (running >= RUNS_AT_ONCE) await new Promise<void>((r) => queued.push(r));
  else running += 1;
  try {
    return await startOak(args, opts).done;
  } finally {
    // hand the slot on (running stays the same) or give it back
    const next = queued.shift();
    if (next) next();
    else running -= 1;
  }
}

export interface RunningOak {
  stdout(): string;
  stderr(): string;
  /** resolves when stdout contains `text` */
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): void;
  done: Promise<RunResult>;
}

export function startOak(args: string[], opts: RunOptions = {}): RunningOak {
  const child = spawn(process.execPath, [oakBin, ...args], {
    env: opts.env as NodeJS.ProcessEnv,
    cwd: opts.cwd ?? repoRoot,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const waiters = new Set<() => void>();
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    for (const w of waiters) w();
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    for (const w of waiters) w();
  });
  if (opts.stdin !== undefined) child.stdin.end(opts.stdin);
  else child.stdin.end();
  const timeout = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  const done = new Promise<RunResult>((resolve) => {
    child.once('close', (code) => {
      clearTimeout(timeout);
      resolve({ code, stdout, stderr });
    });
  });
  return {
    stdout: () => stdout,
    stderr: () => stderr,
    kill: (signal = 'SIGINT') => child.kill(signal),
    done,
    waitFor: (text, timeoutMs = 20_000) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (typeof text === 'string' ? stdout.includes(text) : text.test(stdout)) {
            waiters.delete(check);
            clearTimeout(t);
            resolve();
          }
        };
        const t = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${String(text)}; stdout: ${stdout}; stderr: ${stderr}`));
        }, timeoutMs);
        waiters.add(check);
        check();
        void done.then(() => {
          if (waiters.has(check)) {
            waiters.delete(check);
            clearTimeout(t);
            reject(new Error(`oak exited before printing ${String(text)}; stdout: ${stdout}; stderr: ${stderr}`));
          }
        });
      }),
  };
}

// ---- a scripted cluster behind the root


/**
 * Plays a cluster: REQUESTED -> CLUSTER_SCHEDULED -> NODE_SCHEDULED -> CREATING -> RUNNING, a
 * step every `stepMs`. A service whose code contains `fail` ends FAILED (image pull error), one
 * with `pending` stays REQUESTED (NoActiveClusterWithCapacity), a one_shot one ends COMPLETED.
 * Logs: `log line k of <job>.instance.n`, and with follow a new line every 100 ms.
 */
export class FakeCluster implements ControlPlane {
  ctx!: RootContext;
  clusterId: string | null = null;
  private readonly timers = new Set<NodeJS.Timeout>();
  constructor(private readonly stepMs = 80) {}

  attach(ctx: RootContext): this {
    this.ctx = ctx;
    return this;
  }

  private async set(s: ServiceRow, n: number, status: InstanceState, detail: string): Promise<boolean> {
    const exists = await this.ctx.store.getInstance(s.id, n);
    // an instance on its way out (desired stop) moves on no further: the undeploy finishes it
    if (!exists || (exists.desired === 'stop' && status !== 'UNDEPLOYED')) return false;
    const row = await this.ctx.store.updateInstance(s.id, n, {
      status,
      status_detail: detail,
      ...(status === 'REQUESTED' ? {} : { cluster_id: this.clusterId, worker_id: 'worker-1', publicip: '127.0.0.1' }),
      // the worker's report of the instance's namespace (its virtual instance_ip comes from the root)
      ...(status === 'RUNNING' ? { net: { nsip: `10.18.0.${n + 2}`, nsip_v6: `fdff:18::${n + 2}`, host_ip: '127.0.0.1', host_port: 50103, subnet: '10.18.0.0/26', subnet_v6: 'fdff:18::/64' } } : {}),
    });
    const e: OakEvent = { type: 'instance', microserviceID: s.id, applicationID: s.application_id, job_name: s.job_name, instance: instanceDoc(row) };
    this.ctx.events.publish(e);
    return true;
  }

  instancesRequested(s: ServiceRow, instances: InstanceRow[]): void {
    const code = s.sla.code;
    const steps: [InstanceState, string][] = code.includes('pending')
      ? [['REQUESTED', 'NoActiveClusterWithCapacity']]
      : [
          ['CLUSTER_SCHEDULED', 'placed on cluster fake'],
          ['NODE_SCHEDULED', 'placed on worker-1'],
          ['CREATING', `pulling ${code}`],
          ...(code.includes('fail')
            ? ([['FAILED', `image ${code} not found in the registry`]] as [InstanceState, string][])
            : ([['RUNNING', '']] as [InstanceState, string][])),
          ...(s.sla.one_shot === true && !code.includes('fail') ? ([['COMPLETED', 'exit code 0']] as [InstanceState, string][]) : []),
        ];
    for (const inst of instances) {
      let k = 0;
      const next = (): void => {
        const step = steps[k++];
        if (!step) return;
        const t = setTimeout(() => {
          this.timers.delete(t);
          void this.set(s, inst.instance_number, step[0], step[1]).then((ok) => ok && next(), () => undefined);
        }, this.stepMs);
        this.timers.add(t);
      };
      next();
    }
  }

  /** the cluster confirms an undeploy one step later: the row becomes UNDEPLOYED (as the root's reconciler finishes it) */
  instancesUndeployed(s: ServiceRow, instances: InstanceRow[]): void {
    for (const inst of instances) {
      const t = setTimeout(() => {
        this.timers.delete(t);
        void this.set(s, inst.instance_number, 'UNDEPLOYED', 'undeployed by the API').catch(() => undefined);
      }, this.stepMs);
      this.timers.add(t);
    }
  }

  async logs(s: ServiceRow, i: InstanceRow, opts: LogOptions): Promise<AsyncIterable<string>> {
    const name = `${s.job_name}.instance.${i.instance_number}`;
    // a failed instance of a `fail` image: its worker dropped its logs (what the root then answers)
    if (i.status === 'FAILED' && s.sla.code.includes('fail')) {
      throw new OakError('OAK_LOGS_GONE', `the logs of ${name} (ended 2026-01-01T09:00:00Z) were dropped on worker worker-1 at 2026-01-02T09:00:00Z: this worker keeps the logs of ended instances for 24 h`, {
        hint: 'workers keep the logs of ended instances for a while (NodeEngine --log-retention, default 24h)',
      });
    }
    return this.lines(name, opts);
  }

  async *lines(name: string, opts: LogOptions): AsyncIterable<string> {
    const all = Array.from({ length: 5 }, (_, k) => `log line ${k + 1} of ${name}`);
    for (const l of opts.tail !== undefined ? all.slice(-opts.tail) : all) yield l;
    let k = all.length;
    while (opts.follow && !opts.signal.aborted) {
      await new Promise((r) => setTimeout(r, 100));
      if (opts.signal.aborted) return;
      k += 1;
      yield `log line ${k} of ${name}`;
    }
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

export interface TestRoot {
  root: RootHandle;
  url: string;
  cluster: FakeCluster | undefined;
  close(): Promise<void>;
}

/** A real root on 127.0.0.1 and a free port; with `cluster`, a FakeCluster behind it. */
export async function startTestRoot(opts: { cluster?: boolean; accessTtlSec?: number; stepMs?: number; port?: number; dataDir?: string } = {}): Promise<TestRoot> {
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'oak-cli-root-'));
  const fake = opts.cluster === true ? new FakeCluster(opts.stepMs) : undefined;
  const root = await startRoot({
    host: '127.0.0.1',
    port: opts.port ?? 0,
    dataDir,
    adminPassword: ADMIN_PASSWORD,
    logLevel: 'silent',
    announce: () => undefined,
    ...(opts.accessTtlSec !== undefined ? { accessTtlSec: opts.accessTtlSec } : {}),
    ...(fake ? { control: (ctx: RootContext) => fake.attach(ctx) } : {}),
  });
  if (fake) {
    const c = await root.ctx.store.upsertCluster('fake', '48.1351,11.5820');
    await root.ctx.store.updateCluster(c.id, {
      status: 'ACTIVE',
      last_seen: new Date().toISOString(),
      resources: {
        cpu_cores_free: 3.5,
        cpu_cores_total: 4,
        memory_free_mb: 6000,
        memory_total_mb: 8000,
        gpus_free: 0,
        virtualizations: ['container', 'process'],
        workers: 1,
        worker_summary: [
          {
            id: 'worker-1',
            name: 'edge-worker-1',
            cpu_cores_free: 3.5,
            memory_free_mb: 6000,
            gpus_free: 1,
            gpus: [
              { index: 0, name: 'NVIDIA T4', memory_mb: 15360, uuid: 'GPU-aaaa' },
              { index: 1, name: 'NVIDIA T4', memory_mb: 15360, uuid: 'GPU-bbbb' },
            ],
            virtualizations: ['container', 'process'],
            location: '48.1351,11.5820',
            net: {
              subnet: '10.18.0.0/26',
              subnet_v6: 'fdff:18::/64',
              host_ip: '127.0.0.1',
              host_port: 50103,
              rtt: [
                { worker_id: 'worker-3', rtt_ms: 0.84 },
                { worker_id: 'worker-2', rtt_ms: 1.23 },
                { worker_id: 'worker-4', rtt_ms: null },
                { worker_id: 'a-worker-with-a-very-long-name', rtt_ms: 12 },
              ],
            },
          },
        ],
      },
    });
    fake.clusterId = c.id;
  }
  return {
    root,
    url: root.url,
    cluster: fake,
    close: async () => {
      await root.close();
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A free TCP port on 127.0.0.1 with nothing listening (for "cannot reach" tests). */
export async function closedPort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
