/**
 * Small building blocks shared by every testkit helper: ports, polling, temp dirs, running
 * commands, and last-resort cleanup when a test process dies before its after() hooks run.
 */
import { spawn, execFileSync } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A short random id (lowercase hex) used to make names unique per test run. */
export function shortId(bytes = 3): string {
  return randomBytes(bytes).toString('hex');
}

/** A TCP port on 127.0.0.1 that was free a moment ago (bind it soon; retry on EADDRINUSE). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface WaitForOptions {
  /** default 10000 */
  timeoutMs?: number;
  /** default 50 */
  intervalMs?: number;
  /** what was awaited, used in the timeout error */
  message?: string;
}

/**
 * Calls `fn` until it returns a value that is not `undefined`, `null` or `false`, and resolves with
 * it. A throwing `fn` counts as "not yet"; its last error is attached as the cause on timeout.
 */
export async function waitFor<T>(fn: () => T | Promise<T>, opts: WaitForOptions = {}): Promise<Exclude<T, undefined | null | false>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== null && v !== false) return v as Exclude<T, undefined | null | false>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const detail = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.message ?? 'condition'}${detail}`, { cause: lastError });
    }
    await sleep(intervalMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface TmpDir {
  path: string;
  /** removes the directory and everything in it; idempotent */
  remove(): Promise<void>;
}

/** A fresh directory under the OS temp dir (`/tmp/<prefix>-XXXXXX`). */
export async function tmpDir(prefix = 'oak-test'): Promise<TmpDir> {
  const path = await mkdtemp(join(tmpdir(), `${prefix}-`));
  // `<path>-work` too: a NodeEngine with this as its data dir puts its process workloads' working
  // directories there by default (the name is as unique as mkdtemp's)
  const work = `${path}-work`;
  const unregister = onProcessExit(() => {
    rmSync(path, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });
  return {
    path,
    remove: async () => {
      await rm(path, { recursive: true, force: true, maxRetries: 3 });
      await rm(work, { recursive: true, force: true, maxRetries: 3 });
      unregister();
    },
  };
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface RunOptions {
  /** reject when the exit code is not 0 (default true) */
  check?: boolean;
  input?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
}

/** Runs a command to completion and collects its output. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs !== undefined) timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', (err) => { if (timer) clearTimeout(timer); reject(err); });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      const c = code ?? (signal ? 128 : 1);
      if (c !== 0 && opts.check !== false) {
        reject(new Error(`${cmd} ${args.join(' ')} exited with ${code ?? signal}: ${stderr.trim() || stdout.trim()}`));
      } else {
        resolve({ stdout, stderr, code: c });
      }
    });
    if (child.stdin) {
      child.stdin.on('error', () => { /* the command did not read its input */ });
      child.stdin.end(opts.input);
    }
  });
}

/** Runs a command synchronously, ignoring failures (for exit-time cleanup). */
export function runSyncQuiet(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'], encoding: 'utf8', timeout: 10_000 });
  } catch {
    return '';
  }
}

/**
 * Spawns a long-running daemon; its output is kept (last 64 KB) for error messages.
 * Registered for a SIGKILL at process exit in case nobody stops it.
 */
export function spawnDaemon(cmd: string, args: string[], opts: SpawnOptions = {}): { child: ChildProcess; output: () => string } {
  const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const add = (d: Buffer): void => {
    out += d.toString('utf8');
    if (out.length > 65536) out = out.slice(-65536);
  };
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  const unregister = onProcessExit(() => {
    if (child.exitCode === null && child.signalCode === null) {
      try { child.kill('SIGKILL'); } catch { /* gone */ }
    }
  });
  child.on('exit', unregister);
  return { child, output: () => out };
}

/** Sends SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
export async function stopProcess(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } }, graceMs);
  await exited;
  clearTimeout(t);
}

// ---- last-resort cleanup -------------------------------------------------------------------

const exitHooks = new Set<() => void>();
let hooksInstalled = false;

function runExitHooks(): void {
  for (const h of [...exitHooks].reverse()) {
    try { h(); } catch { /* best effort */ }
  }
  exitHooks.clear();
}

/**
 * Registers a synchronous cleanup that runs if the process exits (normally, or on SIGINT/SIGTERM)
 * while the resource is still alive. Returns a function that unregisters it.
 */
export function onProcessExit(fn: () => void): () => void {
  if (!hooksInstalled) {
    hooksInstalled = true;
    process.on('exit', runExitHooks);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(sig, () => {
        runExitHooks();
        process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
      });
    }
  }
  exitHooks.add(fn);
  return () => { exitHooks.delete(fn); };
}
