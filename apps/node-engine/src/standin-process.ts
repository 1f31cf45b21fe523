/**
 * TEMPORARY stand-in for @oak/runtimes' ProcessRuntime (being written by another helper): just
 * enough to run native processes detached, survive a NodeEngine restart and report exits.
 * Delete this file once the real driver lands.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isSameProcessAlive, processStartTime, procStat } from '@oak/sysinfo';
import type { InstanceExit, InstanceSpec, InstanceStats, InstanceStatus, LogOptions, ProbeResult, Runtime } from '@oak/runtimes';
import { RuntimeError } from '@oak/runtimes';

interface Meta {
  id: string;
  pid: number;
  starttime?: number | undefined;
  one_shot: boolean;
  labels: Record<string, string>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class StandinProcessRuntime implements Runtime {
  readonly virtualization = 'process' as const;
  readonly #dir: string;
  readonly #listeners: ((e: InstanceExit) => void)[] = [];
  readonly #watched = new Map<string, Meta>();
  readonly #exited = new Set<string>();
  readonly #cpu = new Map<string, { ticks: number; at: number }>();
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: { stateDir: string }) {
    this.#dir = opts.stateDir;
  }

  async probe(): Promise<ProbeResult> {
    return process.platform === 'linux' ? { available: true, detail: 'native processes (stand-in driver)' } : { available: false, detail: 'needs Linux' };
  }

  #path(id: string, f: string): string {
    return join(this.#dir, id, f);
  }

  async #meta(id: string): Promise<Meta | undefined> {
    try {
      return JSON.parse(await readFile(this.#path(id, 'meta.json'), 'utf8')) as Meta;
    } catch {
      return undefined;
    }
  }

  async #exitCode(id: string): Promise<number | undefined> {
    try {
      const t = (await readFile(this.#path(id, 'exit'), 'utf8')).trim();
      return t === '' ? undefined : Number(t);
    } catch {
      return undefined;
    }
  }

  async #statusOf(m: Meta): Promise<InstanceStatus> {
    if (await isSameProcessAlive(m.pid, m.starttime)) return { id: m.id, state: 'RUNNING', detail: 'running', pid: m.pid, labels: m.labels };
    const code = await this.#exitCode(m.id);
    const exit_code = code ?? 137;
    const ok = m.one_shot && exit_code === 0;
    return { id: m.id, state: ok ? 'COMPLETED' : 'FAILED', detail: code === undefined ? 'killed' : `exited with code ${exit_code}`, exit_code, labels: m.labels };
  }

  async start(spec: InstanceSpec): Promise<InstanceStatus> {
    const existing = await this.#meta(spec.id);
    if (existing !== undefined) return this.#statusOf(existing);
    if (!spec.code.startsWith('/')) throw new RuntimeError('OAK_RUNTIME_BAD_CODE', `process code must be an absolute path, got ${JSON.stringify(spec.code)}`);
    try {
      await stat(spec.code);
    } catch {
      throw new RuntimeError('OAK_RUNTIME_NOT_FOUND', `executable ${spec.code} not found`);
    }
    await mkdir(join(this.#dir, spec.id), { recursive: true });
    const log = openSync(this.#path(spec.id, 'log'), 'a');
    const env: Record<string, string> = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', OAK_EXIT_FILE: this.#path(spec.id, 'exit') };
    for (const e of spec.env) {
      const i = e.indexOf('=');
      env[e.slice(0, i)] = e.slice(i + 1);
    }
    const child = spawn('/bin/sh', ['-c', '"$@"; c=$?; echo $c > "$OAK_EXIT_FILE"; exit $c', 'sh', spec.code, ...(spec.cmd ?? [])], {
      detached: true,
      stdio: ['ignore', log, log],
      env,
    });
    closeSync(log);
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new RuntimeError('OAK_RUNTIME_START', `could not start ${spec.code}`);
    const meta: Meta = { id: spec.id, pid, starttime: await processStartTime(pid), one_shot: spec.one_shot, labels: spec.labels };
    await writeFile(this.#path(spec.id, 'meta.json'), JSON.stringify(meta));
    this.#watch(meta);
    return { id: spec.id, state: 'RUNNING', detail: 'running', pid, labels: spec.labels };
  }

  #watch(m: Meta): void {
    this.#watched.set(m.id, m);
    this.#timer ??= setInterval(() => void this.#poll(), 100);
  }

  async #poll(): Promise<void> {
    for (const m of [...this.#watched.values()]) {
      if (await isSameProcessAlive(m.pid, m.starttime)) continue;
      this.#watched.delete(m.id);
      if (this.#exited.has(m.id)) continue;
      this.#exited.add(m.id);
      await sleep(20);
      const st = await this.#statusOf(m);
      if (st.state !== 'COMPLETED' && st.state !== 'FAILED') continue;
      for (const l of this.#listeners) l({ id: m.id, exit_code: st.exit_code ?? 1, state: st.state, detail: st.detail });
    }
    if (this.#watched.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  async stop(id: string): Promise<void> {
    const m = await this.#meta(id);
    this.#watched.delete(id);
    this.#exited.add(id);
    if (m !== undefined && (await isSameProcessAlive(m.pid, m.starttime))) {
      try {
        process.kill(-m.pid, 'SIGTERM');
      } catch { /* gone */ }
      for (let i = 0; i < 50 && (await isSameProcessAlive(m.pid, m.starttime)); i++) await sleep(40);
      try {
        process.kill(-m.pid, 'SIGKILL');
      } catch { /* gone */ }
    }
    await rm(join(this.#dir, id), { recursive: true, force: true });
  }

  async list(): Promise<InstanceStatus[]> {
    let names: string[] = [];
    try {
      names = await readdir(this.#dir);
    } catch {
      return [];
    }
    const out: InstanceStatus[] = [];
    for (const n of names) {
      const m = await this.#meta(n);
      if (m === undefined) continue;
      const st = await this.#statusOf(m);
      if (st.state === 'RUNNING') this.#watch(m);
      out.push(st);
    }
    return out;
  }

  async status(id: string): Promise<InstanceStatus | undefined> {
    const m = await this.#meta(id);
    return m === undefined ? undefined : this.#statusOf(m);
  }

  async *logs(id: string, opts: LogOptions = {}): AsyncIterable<string> {
    const m = await this.#meta(id);
    if (m === undefined) throw new RuntimeError('OAK_RUNTIME_UNKNOWN', `no instance ${id}`);
    const file = this.#path(id, 'log');
    let buf = await readFile(file).catch(() => Buffer.alloc(0));
    let offset = buf.length;
    let lines = buf.toString('utf8').split('\n');
    let rest = lines.pop() ?? '';
    if (opts.tail !== undefined) lines = lines.slice(Math.max(0, lines.length - opts.tail));
    for (const l of lines) yield l;
    if (opts.follow !== true) {
      if (rest !== '') yield rest;
      return;
    }
    for (;;) {
      if (opts.signal?.aborted === true) return;
      const alive = await isSameProcessAlive(m.pid, m.starttime);
      buf = await readFile(file).catch(() => Buffer.alloc(0));
      if (buf.length > offset) {
        const parts = (rest + buf.subarray(offset).toString('utf8')).split('\n');
        offset = buf.length;
        rest = parts.pop() ?? '';
        for (const l of parts) yield l;
      }
      if (!alive) {
        if (rest !== '') yield rest;
        return;
      }
      await sleep(100);
    }
  }

  async stats(id: string): Promise<InstanceStats | undefined> {
    const m = await this.#meta(id);
    if (m === undefined) return undefined;
    const s = await procStat(m.pid);
    if (s === undefined) return undefined;
    const ticks = s.utime + s.stime;
    const now = Date.now();
    const prev = this.#cpu.get(id);
    this.#cpu.set(id, { ticks, at: now });
    const cpu = prev === undefined || now <= prev.at ? 0 : ((ticks - prev.ticks) / 100 / ((now - prev.at) / 1000)) * 100;
    return { cpu_percent: Math.max(0, cpu), memory_mb: (s.rss_pages * 4096) / 1048576 };
  }

  onExit(listener: (exit: InstanceExit) => void): void {
    this.#listeners.push(listener);
  }

  async close(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#watched.clear();
  }
}
