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
import { copyFileSync, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
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

/** `programs` at V1 (and node-engine at V2 too), built, copied, checked and unpacked. */
export async function installField(name: string, programs: string[], diag: (m: string) => void): Promise<InstallField> {
  const d = await tmpDir(`oak-${name}-e2e`);
  const groups = new Set<number>();
  const children = new Set<ChildProcess>();
  const logs: string[] = [];
  const markers: string[] = [];
  const namespaces: string[] = [];
  const arch = process.arch === 'arm64' ? 'arm64' : 'amd64';
  const relA = join(d.path, 'build-a');
  const relB = join(d.path, 'build-b');
  await run(process.execPath, [join(repoRoot, 'scripts/build.mjs')], { cwd: repoRoot });
  const distStarted = Date.now();
  await Promise.all([
    run(process.execPath, [join(repoRoot, 'scripts/dist.mjs'), '--out', relA, '--only', programs.join(','), '--arch', arch, '--version', V1], { cwd: repoRoot }),
    run(process.execPath, [join(repoRoot, 'scripts/dist.mjs'), '--out', relB, '--only', 'node-engine', '--arch', arch, '--version', V2], { cwd: repoRoot }),
  ]);
  diag(`dist of ${programs.length + 1} artifacts: ${Date.now() - distStarted} ms`);
  const sums = readFileSync(join(relA, 'SHA256SUMS'), 'utf8');
  for (const p of programs) assert.match(sums, new RegExp(`^[0-9a-f]{64}  oak-${p}-${V1}-linux-${arch}\\.tar\\.gz$`, 'm'));

  const field = join(d.path, 'device');
  mkdirSync(field);
  for (const f of readdirSync(relA)) copyFileSync(join(relA, f), join(field, f));
  const upgradeTar = `oak-node-engine-${V2}-linux-${arch}.tar.gz`;
  copyFileSync(join(relB, upgradeTar), join(field, upgradeTar));
  await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: field });
  for (const f of readdirSync(field).filter((x) => x.endsWith('.tar.gz'))) await run('tar', ['-xzf', f], { cwd: field });
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
      return false;
    } catch {
      return true;
    }
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
      await d.remove();
    },
  };
  return f;
}
