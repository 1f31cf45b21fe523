/**
 * The release artifacts on their own (issue 14), shared by install.test.ts and fleet.test.ts:
 * `scripts/dist.mjs` writes them (and a second node-engine build with a newer version) into a
 * test directory; they are copied into an empty place outside the repository (no node_modules of
 * the project anywhere above it), checked and unpacked; `install.sh` runs with the `node` of the
 * PATH only, `--no-systemd`, into one prefix per host; the printed command lines run as they are
 * in a shell inside network namespaces. Everything started is stopped by `close()`, whole process
 * groups included (a NodeEngine that restarted itself is in its first one's group).
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { createNetwork, tmpDir, waitFor, type NetHost } from '@oak/testkit';
import { killMarked, removeCgroupParent } from './faults.ts';
import { repoRoot } from './procs.ts';

export const run = promisify(execFile);
export const V1 = '0.1.0';
export const V2 = '0.1.1';

export interface Started {
  unit: string;
  commandLine: string;
}
export interface InstallOut {
  version: string;
  previous?: string;
  upgrade: boolean;
  dataDir: string;
  services: Started[];
}

export interface InstallField {
  /** the test's own directory */
  dir: string;
  /** the empty place the artifacts were copied to and unpacked in */
  field: string;
  arch: 'amd64' | 'arm64';
  /** the unpacked artifact of a program */
  artifact(program: string, version?: string): string;
  /** the tarball of a program in the field */
  tarball(program: string, version?: string): string;
  /** node from the PATH only: the environment of a device, not of this test runner */
  env: Record<string, string>;
  /** `install.sh <args> --no-systemd --json` of an artifact */
  installSh(program: string, args: string[], version?: string): Promise<InstallOut>;
  /** <field>/host-<name>: the file system root of one host */
  prefix(host: string): string;
  net: Awaited<ReturnType<typeof createNetwork>>;
  /** runs a command line in a shell inside the host's network namespace; output to <dir>/<name>.log */
  start(name: string, host: NetHost, cmd: string, extraEnv?: Record<string, string>): ChildProcess;
  logOf(name: string): string;
  /** SIGTERM to the shell's process group, and waits until the whole group is gone */
  stopped(c: ChildProcess): Promise<void>;
  /** cleaned up at close: test markers (workload processes) and NodeEngine namespaces (cgroups) */
  markers: string[];
  namespaces: string[];
  /** prints the tail of every log (on a failure) */
  dumpLogs(): void;
  close(): Promise<void>;
}

/** newest modification time (ms) of the files below `dir` (0 when it is absent) */
function newest(dir: string): number {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  let max = 0;
  for (const n of names) {
    const p = join(dir, n);
    const st = statSync(p);
    max = Math.max(max, st.isDirectory() ? newest(p) : st.mtimeMs);
  }
  return max;
}

/** the program bundles the artifacts carry */
const BUNDLES = ['apps/oakd/dist/oakd.mjs', 'apps/root/dist/oak-root.mjs', 'apps/cluster/dist/oak-cluster.mjs', 'apps/node-engine/dist/NodeEngine.mjs', 'apps/netmanager/dist/NetManager.mjs', 'apps/cli/dist/oak.mjs', 'apps/cli/dist/oak-install.mjs'];

/**
 * Every bundle is there and newer than every source it is built from (`make test` builds before
 * the tests): then the build is not run again. That also keeps a build from rewriting the bundles
 * (and the dashboard's dist, which vite empties first) under the other tests of the suite.
 */
function bundlesFresh(): boolean {
  let oldest = Infinity;
  for (const b of BUNDLES) {
    try {
      oldest = Math.min(oldest, statSync(join(repoRoot, b)).mtimeMs);
    } catch {
      return false;
    }
  }
  const sources = [
    ...readdirSync(join(repoRoot, 'apps')).map((a) => join(repoRoot, 'apps', a, 'src')),
    ...readdirSync(join(repoRoot, 'packages')).map((p) => join(repoRoot, 'packages', p, 'src')),
  ];
  const files = ['scripts/build.mjs', 'package-lock.json'].map((f) => statSync(join(repoRoot, f)).mtimeMs);
  return Math.max(...files, ...sources.map(newest)) <= oldest;
}

/** the sha256 of every input of `scripts/dist.mjs` for these programs (of the bundles just built) */
function distKey(programs: string[], arch: string): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ programs, arch, V1, V2, node: process.version }));
  const file = (p: string): void => {
    h.update(`\0${p}\0`);
    h.update(existsSync(p) ? readFileSync(p) : 'absent');
  };
  file(join(repoRoot, 'scripts/dist.mjs'));
  // the third-party packages the artifacts carry: as installed
  file(join(repoRoot, 'package-lock.json'));
  file(join(repoRoot, 'node_modules/.package-lock.json'));
  // every bundle (oak-install.mjs included): the artifacts carry them as they are
  for (const app of readdirSync(join(repoRoot, 'apps')).sort()) {
    const dist = join(repoRoot, 'apps', app, 'dist');
    if (!existsSync(dist)) continue;
    for (const f of readdirSync(dist).filter((x) => x.endsWith('.mjs')).sort()) file(join(dist, f));
  }
  return h.digest('hex').slice(0, 24);
}

/** an exclusive lock between processes (mkdir is atomic); a lock whose holder died is taken over */
async function withLock<T>(lock: string, fn: () => Promise<T>): Promise<T> {
  await waitFor(
    () => {
      try {
        mkdirSync(lock);
        writeFileSync(join(lock, 'pid'), String(process.pid));
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      let holder = 0;
      try {
        holder = Number(readFileSync(join(lock, 'pid'), 'utf8'));
      } catch {
        // being taken right now, or its holder died before writing its pid
        if (Date.now() - statSync(lock).mtimeMs > 30_000) rmSync(lock, { recursive: true, force: true });
        return false;
      }
      try {
        process.kill(holder, 0);
      } catch {
        rmSync(lock, { recursive: true, force: true });
      }
      return false;
    },
    { timeoutMs: 600_000, intervalMs: 250, message: `the lock ${lock}` },
  );
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/**
 * The artifacts of `scripts/dist.mjs` (`programs` at V1 in build-a, node-engine at V2 in build-b),
 * written once for each set of inputs (distKey: dist.mjs, the bundles, the installed packages) and
 * kept in .e2e-tmp/dist-cache: install.test.ts and fleet.test.ts use the same ones, and a run on
 * unchanged sources uses the last run's. OAK_E2E_DIST_CACHE=0 writes them afresh into `fresh`.
 */
async function distArtifacts(programs: string[], arch: string, fresh: string, diag: (m: string) => void): Promise<{ relA: string; relB: string }> {
  const write = async (out: string): Promise<void> => {
    const started = Date.now();
    await Promise.all([
      run(process.execPath, [join(repoRoot, 'scripts/dist.mjs'), '--out', join(out, 'build-a'), '--only', programs.join(','), '--arch', arch, '--version', V1], { cwd: repoRoot }),
      run(process.execPath, [join(repoRoot, 'scripts/dist.mjs'), '--out', join(out, 'build-b'), '--only', 'node-engine', '--arch', arch, '--version', V2], { cwd: repoRoot }),
    ]);
    diag(`dist of ${programs.length + 1} artifacts: ${Date.now() - started} ms`);
  };
  if (process.env.OAK_E2E_DIST_CACHE === '0') {
    await write(fresh);
    return { relA: join(fresh, 'build-a'), relB: join(fresh, 'build-b') };
  }
  const cache = join(repoRoot, '.e2e-tmp/dist-cache');
  mkdirSync(cache, { recursive: true });
  const key = distKey(programs, arch);
  const entry = join(cache, key);
  await withLock(join(cache, 'lock'), async () => {
    if (existsSync(join(entry, 'complete'))) {
      diag(`dist of ${programs.length + 1} artifacts: the ones of the same inputs (${relative(repoRoot, entry)})`);
      return;
    }
    rmSync(entry, { recursive: true, force: true });
    const partial = `${entry}.partial`;
    rmSync(partial, { recursive: true, force: true });
    await write(partial);
    writeFileSync(join(partial, 'complete'), `${new Date().toISOString()}\n`);
    renameSync(partial, entry);
    // the entries of other inputs: the newest two stay
    const others = readdirSync(cache)
      .filter((x) => /^[0-9a-f]{24}$/.test(x) && x !== key)
      .map((x) => ({ x, t: statSync(join(cache, x)).mtimeMs }))
      .sort((a, b) => b.t - a.t);
    for (const o of others.slice(2)) rmSync(join(cache, o.x), { recursive: true, force: true });
  });
  return { relA: join(entry, 'build-a'), relB: join(entry, 'build-b') };
}

/** whether a process of group `g` is alive (not a zombie), from /proc */
function liveInGroup(g: number): boolean {
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // ended meanwhile
    }
    // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === g && state !== 'Z') return true;
  }
  return false;
}

/** `programs` at V1 (and node-engine at V2 too), built, copied, checked and unpacked. */
export async function installField(name: string, programs: string[], diag: (m: string) => void): Promise<InstallField> {
  const d = await tmpDir(`oak-${name}-e2e`);
  const groups = new Set<number>();
  const children = new Set<ChildProcess>();
  const logs: string[] = [];
  const markers: string[] = [];
  const namespaces: string[] = [];
  const arch = process.arch === 'arm64' ? 'arm64' : 'amd64';
  if (bundlesFresh()) diag('the bundles are newer than their sources: not built again');
  else await run(process.execPath, [join(repoRoot, 'scripts/build.mjs')], { cwd: repoRoot });
  const { relA, relB } = await distArtifacts(programs, arch, d.path, diag);
  const sums = readFileSync(join(relA, 'SHA256SUMS'), 'utf8');
  for (const p of programs) assert.match(sums, new RegExp(`^[0-9a-f]{64}  oak-${p}-${V1}-linux-${arch}\\.tar\\.gz$`, 'm'));

  const field = join(d.path, 'device');
  mkdirSync(field);
  for (const f of readdirSync(relA)) copyFileSync(join(relA, f), join(field, f));
  const upgradeTar = `oak-node-engine-${V2}-linux-${arch}.tar.gz`;
  copyFileSync(join(relB, upgradeTar), join(field, upgradeTar));
  await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: field });
  await Promise.all(readdirSync(field).filter((x) => x.endsWith('.tar.gz')).map((f) => run('tar', ['-xzf', f], { cwd: field })));
  let up = dirname(field);
  while (up !== '/') {
    assert.ok(!existsSync(join(up, 'node_modules')), `${up}/node_modules would let an artifact borrow packages`);
    up = dirname(up);
  }
  const env = { PATH: `${dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin`, NO_COLOR: '1' };
  const artifact = (p: string, v = V1): string => join(field, `oak-${p}-${v}-linux-${arch}`);
  const net = await createNetwork(name.slice(0, 4), { gateway: true });

  const groupGone = (g: number): boolean => {
    try {
      process.kill(-g, 0);
    } catch {
      return true;
    }
    // only zombies left: ended processes that were handed to an init which does not reap them (some
    // containers): nothing of the group runs any more
    return !liveInGroup(g);
  };
  const f: InstallField = {
    dir: d.path,
    field,
    arch,
    artifact,
    tarball: (p, v = V1) => join(field, `oak-${p}-${v}-linux-${arch}.tar.gz`),
    env,
    async installSh(p, args, v = V1) {
      const r = await run(join(artifact(p, v), 'install.sh'), [...args, '--no-systemd', '--json'], { cwd: field, env });
      return JSON.parse(r.stdout) as InstallOut;
    },
    prefix: (h) => join(field, `host-${h}`),
    net,
    start(logName, host, cmd, extraEnv = {}) {
      const logFile = join(d.path, `${logName}.log`);
      logs.push(logFile);
      const c = spawn('nsenter', [`--net=/run/netns/${host.ns}`, '--', 'sh', '-c', cmd], { cwd: field, env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      const out = createWriteStream(logFile, { flags: 'a' });
      c.stdout?.pipe(out);
      c.stderr?.pipe(out);
      children.add(c);
      if (c.pid !== undefined) groups.add(c.pid);
      c.once('exit', () => children.delete(c));
      return c;
    },
    logOf: (logName) => readFileSync(join(d.path, `${logName}.log`), 'utf8'),
    async stopped(c) {
      const group = c.pid as number;
      if (c.exitCode === null && c.signalCode === null) {
        const gone = new Promise<void>((r) => c.once('exit', () => r()));
        try {
          process.kill(-group, 'SIGTERM');
        } catch {
          // gone
        }
        await gone;
      } else {
        try {
          process.kill(-group, 'SIGTERM');
        } catch {
          // the group is gone too
        }
      }
      // the shell goes first; the program it started (same process group) may still be shutting down
      await waitFor(() => groupGone(group), { timeoutMs: 20_000, intervalMs: 50, message: `process group ${group} gone` });
    },
    markers,
    namespaces,
    dumpLogs() {
      for (const l of logs) if (existsSync(l)) console.log(`----- ${l}\n${readFileSync(l, 'utf8').slice(-3000)}`);
    },
    async close() {
      for (const g of groups) {
        try {
          process.kill(-g, 'SIGKILL');
        } catch {
          // gone
        }
      }
      for (const g of groups) await waitFor(() => groupGone(g), { timeoutMs: 10_000, intervalMs: 50, message: `process group ${g} gone` }).catch(() => {});
      for (const m of markers) await killMarked(m);
      for (const n of namespaces) removeCgroupParent(n);
      await net.destroy();
      // the field holds tens of thousands of files (unpacked artifacts, installed prefixes), seconds of
      // disk work under load: moved aside and removed by an rm of its own, outside the test's time
      const trash = `${d.path}.removing`;
      try {
        renameSync(d.path, trash);
        spawn('rm', ['-rf', trash], { detached: true, stdio: 'ignore' }).unref();
      } catch {
        // not moved: remove() below takes it all
      }
      await d.remove();
    },
  };
  return f;
}
