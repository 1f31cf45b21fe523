/**
 * Starts the real binaries (oakd, oak-root, oak-cluster, NodeEngine, NetManager) as child processes, optionally
 * inside a network namespace, with their output kept in a log file that is printed when a test
 * fails. Every process started here is killed by stopAll().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** the launchers (TypeScript through tsx) or, after useBuiltBinaries(), the bundles of `make build` */
let built = false;
const bin = (app: string, name: string): string => join(repoRoot, built ? `apps/${app}/dist/${name}.mjs` : `apps/${app}/bin/${name}.mjs`);

export const bins = {
  get oakd() { return bin('oakd', 'oakd'); },
  get root() { return bin('root', 'oak-root'); },
  get cluster() { return bin('cluster', 'oak-cluster'); },
  get nodeEngine() { return bin('node-engine', 'NodeEngine'); },
  get netManager() { return bin('netmanager', 'NetManager'); },
  get cli() { return bin('cli', 'oak'); },
};

/**
 * Run the bundles `make build` writes (what users run: no TypeScript loader, less memory) instead
 * of the launchers, e.g. for footprint numbers in the bench. Throws when they are not built.
 */
export function useBuiltBinaries(): void {
  built = true;
  for (const p of Object.values(Object.getOwnPropertyDescriptors(bins)).map((d) => (d.get as () => string)())) {
    if (!existsSync(p)) {
      built = false;
      throw new Error(`${p} is missing: run \`make build\` (node scripts/build.mjs) first`);
    }
  }
}

export interface Proc {
  name: string;
  child: ChildProcess;
  logFile: string;
  /** resolves with the exit code (or signal name) */
  exited: Promise<number | string>;
  log(): string;
  kill(signal?: NodeJS.Signals): Promise<number | string>;
}

export interface SpawnOptions {
  env?: Record<string, string>;
  netns?: string;
  dir: string;
}

export class Procs {
  private readonly all = new Set<Proc>();

  spawn(name: string, bin: string, args: string[], opts: SpawnOptions): Proc {
    const logFile = join(opts.dir, `${name}.log`);
    const out = createWriteStream(logFile, { flags: 'a' });
    const argv = [process.execPath, bin, ...args];
    // nsenter enters only the network namespace: the host's mount namespace (so /run/netns entries
    // the worker makes for its instances are visible to containerd) and cgroups stay as on a real host
    const [cmd, ...rest] = opts.netns ? ['nsenter', `--net=/run/netns/${opts.netns}`, '--', ...argv] : argv;
    const child = spawn(cmd as string, rest, {
      env: { ...process.env, NO_COLOR: '1', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.pipe(out, { end: false });
    child.stderr?.pipe(out, { end: false });
    const exited = new Promise<number | string>((resolve) => {
      child.once('exit', (code, signal) => {
        this.all.delete(proc);
        resolve(code ?? signal ?? 'unknown');
      });
    });
    const proc: Proc = {
      name,
      child,
      logFile,
      exited,
      log: () => {
        try {
          return readFileSync(logFile, 'utf8');
        } catch {
          return '';
        }
      },
      kill: async (signal = 'SIGTERM') => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        const r = await exited;
        clearTimeout(t);
        return r;
      },
    };
    this.all.add(proc);
    return proc;
  }

  logs(): string {
    return [...this.all].map((p) => `----- ${p.name} -----\n${p.log().slice(-6000)}`).join('\n');
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.all].map((p) => p.kill('SIGTERM')));
  }
}
