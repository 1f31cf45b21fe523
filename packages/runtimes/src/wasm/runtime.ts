/**
 * `wasm` virtualization (ours): a WASI preview 1 module (an absolute path on the worker, a file://
 * URL, or an http(s) URL downloaded with a size cap into a cache keyed by its SHA-256) run by a
 * small Node runner (runner.ts, node:wasi) under the shared supervisor (../supervisor/), so it has
 * the cgroup, state file, re-adoption after a NodeEngine restart, logs, stats and the exit verdict
 * of every supervised child.
 *
 * Per instance, in its work directory `<workRoot>/<id>/` (owned by the workload user):
 *   module.wasm  the module with its memory's maximum set to the SLA's memory (binary.ts)
 *   runner.mjs   the runner; env.json the SLA's env; wasm-end what a trap or OOM left
 *   scratch/     the one directory the module sees (preopened as `/`), with the SLA's added files
 * The module's arguments are `cmd` then `args`; its environment is the SLA's, nothing else.
 * Memory: the module's memory cannot grow past memory_mb (memory.grow returns -1; the runner
 * reports the trap that usually follows as out of memory), and the cgroup holds the runner to
 * memory_mb + the runner's own (RUNNER_OVERHEAD_MB) as a backstop.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chown, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RuntimeError } from '../types.ts';
import type { InstanceSpec, ProbeResult } from '../types.ts';
import type { Launch, LaunchContext, Launcher } from '../supervisor/launcher.ts';
import { SupervisedRuntime } from '../supervisor/supervisor.ts';
import type { SupervisorOptions } from '../supervisor/supervisor.ts';
import { interpretExit } from '../supervisor/verdict.ts';
import type { ExitVerdict, RawExit } from '../supervisor/verdict.ts';
import { DEFAULT_MAX_DOWNLOAD_BYTES } from '../process/code.ts';
import { downloadFile } from '../supervisor/download.ts';
import { PAGES_PER_MB, capMemory } from './binary.ts';
import { RUNNER_SOURCE } from './runner.ts';

/** what the Node runner itself needs beside the module's memory (its RSS is ~45 MB idle) */
export const RUNNER_OVERHEAD_MB = 96;
/** the largest module accepted (download and local file) */
export const MAX_MODULE_BYTES = 64 * 1024 * 1024;
const MAX_CMD_ARGS = 4096;

/** a WASI preview 1 module that calls proc_exit(7): the probe runs it */
const PROBE_MODULE = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x60, 0x01, 0x7f, 0x00, 0x60, 0x00, 0x00, 0x02, 0x24, 0x01, 0x16, 0x77, 0x61, 0x73, 0x69, 0x5f, 0x73, 0x6e, 0x61,
  0x70, 0x73, 0x68, 0x6f, 0x74, 0x5f, 0x70, 0x72, 0x65, 0x76, 0x69, 0x65, 0x77, 0x31, 0x09, 0x70, 0x72, 0x6f, 0x63, 0x5f, 0x65, 0x78, 0x69, 0x74, 0x00, 0x00, 0x03, 0x02, 0x01, 0x01,
  0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x13, 0x02, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x06, 0x5f, 0x73, 0x74, 0x61, 0x72, 0x74, 0x00, 0x01, 0x0a, 0x08, 0x01, 0x06,
  0x00, 0x41, 0x07, 0x10, 0x00, 0x0b,
]);

/** the part of the WebAssembly JS API used here (the project's lib has no DOM types) */
interface WasmApi {
  Module: {
    new (bytes: Uint8Array): object;
    exports(m: object): Array<{ name: string; kind: string }>;
    imports(m: object): Array<{ module: string; name: string; kind: string }>;
  };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

export interface WasmLauncherOptions {
  /** the Node binary that runs the runner (default: the NodeEngine's own) */
  node?: string | undefined;
  fetchTimeoutMs?: number | undefined;
  maxModuleBytes?: number | undefined;
}

/** node flags of the runner: quiet about node:wasi being experimental, a small JS heap */
export function runnerNodeFlags(): string[] {
  return ['--disable-warning=ExperimentalWarning', '--max-old-space-size=32'];
}

export class WasmLauncher implements Launcher {
  readonly virtualization = 'wasm' as const;
  /** added files land where the module can see them */
  readonly filesDir = 'scratch';
  readonly #workRoot: string;
  readonly #node: string;
  readonly #timeoutMs: number;
  readonly #maxBytes: number;
  readonly #downloads = new Map<string, Promise<string>>();

  constructor(workRoot: string, opts: WasmLauncherOptions = {}) {
    this.#workRoot = workRoot;
    this.#node = opts.node ?? process.execPath;
    this.#timeoutMs = opts.fetchTimeoutMs ?? 60000;
    this.#maxBytes = opts.maxModuleBytes ?? MAX_MODULE_BYTES;
  }

  async probe(host: { cgroups: boolean; detail: string; workDir?: string | undefined }): Promise<ProbeResult> {
    // the runner opens itself and the module by path as the workload user
    if (host.workDir !== undefined) return { available: false, detail: `${host.workDir} (make it searchable, e.g. chmod o+x, or move the NodeEngine's --data-dir: the work dir is <data dir>-work)` };
    let dir: string | undefined;
    try {
      dir = await mkdtemp(join(tmpdir(), 'oak-wasm-probe-'));
      await mkdir(join(dir, 'scratch'));
      await writeFile(join(dir, 'runner.mjs'), RUNNER_SOURCE);
      await writeFile(join(dir, 'module.wasm'), PROBE_MODULE);
      await writeFile(join(dir, 'env.json'), '[]');
      const d = dir;
      const code = await new Promise<number | null>((resolve, reject) => {
        const c = spawn(this.#node, [...runnerNodeFlags(), join(d, 'runner.mjs'), join(d, 'module.wasm'), join(d, 'scratch'), join(d, 'env.json'), join(d, 'end'), '0'], { stdio: 'ignore' });
        const t = setTimeout(() => c.kill('SIGKILL'), 15000);
        c.once('error', reject);
        c.once('exit', (n) => {
          clearTimeout(t);
          resolve(n);
        });
      });
      if (code !== 7) return { available: false, detail: `the WASI runner (${this.#node} ${process.version}, node:wasi) does not work: the probe module exited with ${String(code)}, not 7` };
    } catch (e) {
      return { available: false, detail: `the WASI runner cannot run: ${(e as Error).message}` };
    } finally {
      if (dir !== undefined) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
    const limits = host.cgroups ? `memory by the module's maximum and ${host.detail}` : `memory by the module's maximum only (no cgroups: ${host.detail}; instances asking for memory or vcpus are refused)`;
    return { available: true, detail: `WASI preview 1 modules in node:wasi (${this.#node} ${process.version}), ${limits}` };
  }

  async launch(spec: InstanceSpec, ctx: LaunchContext): Promise<Launch> {
    const cmd = [...(spec.cmd ?? []), ...(spec.args ?? [])];
    if (cmd.length > MAX_CMD_ARGS) throw new RuntimeError('invalid_spec', `cmd and args have ${cmd.length} arguments, at most ${MAX_CMD_ARGS}`);
    if (cmd.some((a) => a.includes('\0')) || spec.env.some((a) => a.includes('\0'))) throw new RuntimeError('invalid_spec', 'cmd, args and env must not contain NUL bytes');
    const source = await this.#module(spec.code, ctx.cacheDir);
    const raw = await readFile(source);
    const memMb = spec.memory_mb ?? 0;
    const capped = capMemory(raw, Math.floor(memMb * PAGES_PER_MB));
    let mod: object;
    try {
      mod = new WA.Module(capped.bytes);
    } catch (e) {
      throw new RuntimeError('invalid_code', `${spec.code} is not a valid WebAssembly module: ${(e as Error).message}`, { cause: e });
    }
    const exports = WA.Module.exports(mod);
    if (!exports.some((x) => x.name === '_start' && x.kind === 'function')) throw new RuntimeError('invalid_code', `${spec.code} exports no _start function (a WASI command module needs one)`);
    if (!exports.some((x) => x.name === 'memory' && x.kind === 'memory')) throw new RuntimeError('invalid_code', `${spec.code} exports no memory named "memory"`);
    const bad = WA.Module.imports(mod).find((i) => i.module !== 'wasi_snapshot_preview1');
    if (bad !== undefined) throw new RuntimeError('invalid_code', `${spec.code} imports ${bad.module}.${bad.name}; only WASI preview 1 (wasi_snapshot_preview1) is provided`);

    const scratch = join(ctx.work, 'scratch');
    // made already when the SLA has added files (the supervisor placed them in it)
    await mkdir(scratch, { recursive: true, mode: 0o700 });
    const files: Array<[string, string | Uint8Array]> = [
      ['module.wasm', capped.bytes],
      ['runner.mjs', RUNNER_SOURCE],
      ['env.json', JSON.stringify(spec.env)],
    ];
    for (const [name, data] of files) await writeFile(join(ctx.work, name), data, { mode: 0o444 });
    if (ctx.runAs !== undefined) await chown(scratch, ctx.runAs.uid, ctx.runAs.gid);
    const end = join(ctx.work, 'wasm-end');
    return {
      argv: [this.#node, ...runnerNodeFlags(), join(ctx.work, 'runner.mjs'), join(ctx.work, 'module.wasm'), scratch, join(ctx.work, 'env.json'), end, String(capped.maxPages ?? 0), ...cmd],
      executable: source,
      ownEnv: true,
      cgroupMemoryMb: memMb > 0 ? memMb + RUNNER_OVERHEAD_MB : undefined,
    };
  }

  verdict(raw: RawExit, spec: InstanceSpec): ExitVerdict {
    let end: { kind?: unknown; detail?: unknown } | undefined;
    try {
      const text = readFileSync(join(this.#workRoot, spec.id, 'wasm-end'), 'utf8').slice(0, 4096);
      end = JSON.parse(text.split('\n')[0] ?? '') as { kind?: unknown; detail?: unknown };
    } catch {
      end = undefined;
    }
    // the cgroup backstop, or no word from the runner: the one verdict of every driver
    if (raw.oomKills > 0 || end === null || typeof end !== 'object' || typeof end.detail !== 'string') return interpretExit({ ...raw, memoryLimitMb: raw.memoryLimitMb });
    const detail = end.detail.replace(/[\u0000-\u001f]/g, ' ').slice(0, 500);
    const exit_code = raw.code ?? -1;
    if (end.kind === 'oom') return { exit_code, state: 'FAILED', detail: spec.memory_mb !== undefined && spec.memory_mb > 0 ? `${detail} (memory ${spec.memory_mb} MB)` : detail };
    return { exit_code, state: 'FAILED', detail };
  }

  /** the module file on this worker: a local path as it is, a URL from the cache (downloading it once) */
  async #module(code: string, cacheDir: string): Promise<string> {
    if (code.trim() === '') throw new RuntimeError('invalid_spec', 'code (the module) is empty');
    if (code.length > 4096) throw new RuntimeError('invalid_spec', 'code is longer than 4096 characters');
    let path: string;
    if (/^https?:\/\//i.test(code)) return this.#cached(code, join(cacheDir, 'wasm'));
    if (/^file:/i.test(code)) {
      try {
        path = fileURLToPath(code);
      } catch (e) {
        throw new RuntimeError('invalid_code', `code ${JSON.stringify(code)} is not a valid file URL`, { cause: e });
      }
    } else if (isAbsolute(code)) path = code;
    else throw new RuntimeError('invalid_code', `code ${JSON.stringify(code)} must be an absolute path, a file:// or an http(s):// URL of a .wasm module`);
    let s;
    try {
      s = await stat(path);
    } catch {
      throw new RuntimeError('code_not_found', `module ${path} does not exist`);
    }
    if (!s.isFile()) throw new RuntimeError('invalid_code', `${path} is not a regular file`);
    if (s.size > this.#maxBytes) throw new RuntimeError('code_too_large', `module ${path} has ${s.size} bytes, more than the ${this.#maxBytes}-byte cap`);
    return path;
  }

  /**
   * The cache: `<cacheDir>/wasm/sha256-<hex>.wasm` holds each module once whatever URLs it came
   * from; `url-<sha256 of the URL>` names the file a URL gave (so a second deploy downloads
   * nothing). Concurrent starts of one URL share one download.
   */
  #cached(url: string, dir: string): Promise<string> {
    const key = createHash('sha256').update(url).digest('hex');
    let p = this.#downloads.get(key);
    if (p === undefined) {
      p = this.#download(url, dir, key).finally(() => this.#downloads.delete(key));
      this.#downloads.set(key, p);
    }
    return p;
  }

  async #download(url: string, dir: string, key: string): Promise<string> {
    const pointer = join(dir, `url-${key}`);
    try {
      const hex = (await readFile(pointer, 'utf8')).trim();
      if (/^[0-9a-f]{64}$/.test(hex) && existsSync(join(dir, `sha256-${hex}.wasm`))) return join(dir, `sha256-${hex}.wasm`);
    } catch {
      /* not yet */
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = join(dir, `.${key}.${process.pid}.${Date.now()}.part`);
    try {
      const { sha256 } = await downloadFile(url, tmp, { timeoutMs: this.#timeoutMs, maxBytes: Math.min(this.#maxBytes, DEFAULT_MAX_DOWNLOAD_BYTES) });
      const dest = join(dir, `sha256-${sha256}.wasm`);
      await rename(tmp, dest);
      await writeFile(`${pointer}.tmp`, `${sha256}\n`);
      await rename(`${pointer}.tmp`, pointer);
      return dest;
    } finally {
      await rm(tmp, { force: true });
    }
  }
}

export interface WasmRuntimeOptions extends SupervisorOptions, WasmLauncherOptions {}

export class WasmRuntime extends SupervisedRuntime {
  constructor(opts: WasmRuntimeOptions) {
    super(new WasmLauncher(opts.workRoot ?? `${opts.dataDir.replace(/\/+$/, '')}/work`, opts), opts);
  }
}
