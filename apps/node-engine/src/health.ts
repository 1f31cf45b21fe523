/**
 * Health probes and local restarts (issue 10): the pure parts (probe settings with defaults, the
 * healthy/unhealthy state machine, the restart decision and its backoff), a scheduler that runs
 * one probe at a time per instance on an injectable clock, and the three probe kinds (http GET,
 * tcp connect, exec in the instance's namespaces).
 */
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { connect } from 'node:net';
import { HEALTH_LIMITS, RESTART_MAX_DEFAULT } from '@oak/contracts';
import type { HealthProbe, HealthState, RestartPolicy } from '@oak/contracts';

// ------------------------------------------------------------------ settings

export interface ProbeSettings {
  type: 'http' | 'tcp' | 'exec';
  port: number | undefined;
  path: string;
  command: string[];
  intervalMs: number;
  timeoutMs: number;
  failureThreshold: number;
}

function clamp(v: number | undefined, lim: { min: number; max: number; default: number }): number {
  if (v === undefined || !Number.isFinite(v)) return lim.default;
  return Math.min(lim.max, Math.max(lim.min, v));
}

/** The SLA's probe with defaults (interval 10 s, timeout 2 s, threshold 3); values out of range are clamped. */
export function probeSettings(p: HealthProbe): ProbeSettings {
  return {
    type: p.type,
    port: p.port,
    path: p.path ?? '/',
    command: p.command ?? [],
    intervalMs: Math.round(clamp(p.interval_s, HEALTH_LIMITS.interval_s) * 1000),
    timeoutMs: Math.round(clamp(p.timeout_s, HEALTH_LIMITS.timeout_s) * 1000),
    failureThreshold: Math.round(clamp(p.failure_threshold, HEALTH_LIMITS.failure_threshold)),
  };
}

// ------------------------------------------------------------------ state machine

export interface HealthView {
  status: HealthState;
  /** consecutive failed probes */
  failures: number;
  /** what the last probe said */
  detail: string;
}

export interface ProbeOutcome {
  ok: boolean;
  detail: string;
}

export function initialHealth(): HealthView {
  return { status: 'starting', failures: 0, detail: 'no probe answered yet' };
}

/**
 * One probe result applied: a success makes it healthy and resets the count; `threshold`
 * consecutive failures make it unhealthy (from starting too). `changed`: the status moved.
 */
export function stepHealth(h: HealthView, r: ProbeOutcome, threshold: number): { next: HealthView; changed: boolean } {
  if (r.ok) {
    const next: HealthView = { status: 'healthy', failures: 0, detail: r.detail };
    return { next, changed: h.status !== 'healthy' };
  }
  const failures = h.failures + 1;
  const status: HealthState = failures >= threshold ? 'unhealthy' : h.status;
  return { next: { status, failures, detail: r.detail }, changed: status !== h.status };
}

// ------------------------------------------------------------------ restarts

export interface RestartSettings {
  policy: RestartPolicy;
  max: number;
}

/** restart and restart_max with their defaults: on-failure for services, never for one_shot; 3 */
export function restartSettings(svc: { restart?: RestartPolicy | undefined; restart_max?: number | undefined; one_shot?: boolean | undefined }): RestartSettings {
  return { policy: svc.restart ?? (svc.one_shot === true ? 'never' : 'on-failure'), max: svc.restart_max ?? RESTART_MAX_DEFAULT };
}

export const BACKOFF_INITIAL_MS = 1000;
export const BACKOFF_MAX_MS = 30_000;

/** Delay before local restart number `n` (1-based): 1 s, 2 s, 4 s, ... capped at 30 s. */
export function restartBackoffMs(n: number, initial = BACKOFF_INITIAL_MS, max = BACKOFF_MAX_MS): number {
  return Math.min(max, initial * 2 ** Math.min(Math.max(0, n - 1), 30));
}

export type EndCause = 'completed' | 'failed' | 'unhealthy';

export type RestartDecision =
  | { restart: true; attempt: number; delayMs: number }
  | { restart: false; reason: 'policy' | 'exhausted' };

/**
 * After an exit (completed: exit 0 of a one-shot; failed: any other exit) or the health probe's
 * threshold: restart (how many so far, how long to wait), or not (why).
 */
export function decideRestart(s: RestartSettings, restartsSoFar: number, cause: EndCause, initialMs = BACKOFF_INITIAL_MS, maxMs = BACKOFF_MAX_MS): RestartDecision {
  if (s.policy === 'never') return { restart: false, reason: 'policy' };
  if (s.policy === 'on-failure' && cause === 'completed') return { restart: false, reason: 'policy' };
  if (restartsSoFar >= s.max) return { restart: false, reason: 'exhausted' };
  const attempt = restartsSoFar + 1;
  return { restart: true, attempt, delayMs: restartBackoffMs(attempt, initialMs, maxMs) };
}

// ------------------------------------------------------------------ scheduler

export interface Clock {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * Runs `probe` every intervalMs (the first one after one interval), one at a time, each bounded by
 * timeoutMs; tells `onChange` when the status moves. stop() ends it; a late answer is dropped.
 */
export class HealthMonitor {
  view: HealthView = initialHealth();
  #timer: unknown;
  #stopped = false;
  #abort: AbortController | undefined;
  readonly #s: ProbeSettings;
  readonly #probe: (signal: AbortSignal, timeoutMs: number) => Promise<ProbeOutcome>;
  readonly #clock: Clock;
  readonly #onChange: (v: HealthView) => void;

  constructor(s: ProbeSettings, probe: (signal: AbortSignal, timeoutMs: number) => Promise<ProbeOutcome>, onChange: (v: HealthView) => void, clock: Clock = realClock) {
    this.#s = s;
    this.#probe = probe;
    this.#onChange = onChange;
    this.#clock = clock;
  }

  start(): void {
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    this.#clock.clearTimeout(this.#timer);
    this.#abort?.abort();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = this.#clock.setTimeout(() => void this.#run(), this.#s.intervalMs);
  }

  async #run(): Promise<void> {
    if (this.#stopped) return;
    const abort = new AbortController();
    this.#abort = abort;
    let timer: unknown;
    const timedOut = new Promise<ProbeOutcome>((resolve) => {
      timer = this.#clock.setTimeout(() => {
        abort.abort();
        resolve({ ok: false, detail: `no answer within ${this.#s.timeoutMs} ms` });
      }, this.#s.timeoutMs);
    });
    let r: ProbeOutcome;
    try {
      r = await Promise.race([this.#probe(abort.signal, this.#s.timeoutMs), timedOut]);
    } catch (err) {
      r = { ok: false, detail: err instanceof Error ? err.message : String(err) };
    } finally {
      this.#clock.clearTimeout(timer);
    }
    if (this.#stopped) return;
    const { next, changed } = stepHealth(this.view, r, this.#s.failureThreshold);
    this.view = next;
    if (changed) this.#onChange(next);
    this.#schedule();
  }
}

// ------------------------------------------------------------------ probes

export interface ProbeTarget {
  /** the instance's namespace address, or 127.0.0.1 */
  host: string;
  /** path of the instance's network namespace (exec) */
  netns?: string | undefined;
  /** the instance's main process (exec enters its namespaces) */
  pid?: number | undefined;
}

const MAX_BODY = 64 * 1024;

/** GET http://host:port/path: 2xx and 3xx are healthy. */
export function httpProbe(host: string, port: number, path: string, signal: AbortSignal, timeoutMs: number): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    const req = request({ host, port, path, method: 'GET', signal, timeout: timeoutMs, headers: { 'user-agent': 'oak-health' } }, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => {
        n += c.length;
        if (n > MAX_BODY) res.destroy();
      });
      const code = res.statusCode ?? 0;
      const done = (): void => resolve(code >= 200 && code < 400 ? { ok: true, detail: `http ${code}` } : { ok: false, detail: `http GET ${path} answered ${code}` });
      res.on('end', done);
      res.on('close', done);
      res.on('error', done);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ ok: false, detail: `http GET ${path}: ${err.message}` }));
    req.end();
  });
}

/** A TCP connection to host:port that is accepted is healthy. */
export function tcpProbe(host: string, port: number, signal: AbortSignal, timeoutMs: number): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    const s = connect({ host, port, timeout: timeoutMs });
    const finish = (r: ProbeOutcome): void => {
      s.destroy();
      resolve(r);
    };
    signal.addEventListener('abort', () => finish({ ok: false, detail: 'aborted' }), { once: true });
    s.on('connect', () => finish({ ok: true, detail: `tcp ${port} accepts` }));
    s.on('timeout', () => finish({ ok: false, detail: `tcp ${port}: no answer within ${timeoutMs} ms` }));
    s.on('error', (err) => finish({ ok: false, detail: `tcp ${port}: ${err.message}` }));
  });
}

/**
 * Runs `argv` inside the instance: in the namespaces of its main process when the pid is known
 * (mount, network, uts, ipc, pid: a container sees its own filesystem), else in its network
 * namespace, else on the node. Exit 0 is healthy.
 */
export function execProbe(argv: readonly string[], target: ProbeTarget, signal: AbortSignal, timeoutMs: number): Promise<ProbeOutcome> {
  const full = target.pid !== undefined
    ? ['nsenter', '-t', String(target.pid), '-m', '-n', '-u', '-i', '-p', '--', ...argv]
    : target.netns !== undefined ? ['nsenter', `--net=${target.netns}`, '--', ...argv] : [...argv];
  return new Promise((resolve) => {
    const [cmd, ...args] = full as [string, ...string[]];
    let out = '';
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], signal, timeout: timeoutMs, killSignal: 'SIGKILL' });
    const keep = (c: Buffer): void => {
      if (out.length < 512) out += c.toString('utf8');
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (err) => resolve({ ok: false, detail: `exec ${argv[0] ?? ''}: ${err.message}` }));
    child.on('close', (code, sig) => {
      const tail = out.trim().slice(0, 200);
      if (code === 0) resolve({ ok: true, detail: 'exec exited 0' });
      else resolve({ ok: false, detail: `exec ${argv[0] ?? ''} ${sig !== null ? `killed by ${sig}` : `exited ${String(code)}`}${tail !== '' ? `: ${tail}` : ''}` });
    });
  });
}

/** The probe function for one instance. */
export function probeFor(s: ProbeSettings, target: () => Promise<ProbeTarget>): (signal: AbortSignal, timeoutMs: number) => Promise<ProbeOutcome> {
  return async (signal, timeoutMs) => {
    const t = await target();
    if (s.type === 'exec') return execProbe(s.command, t, signal, timeoutMs);
    if (s.port === undefined) return { ok: false, detail: `a ${s.type} probe needs a port` };
    return s.type === 'http' ? httpProbe(t.host, s.port, s.path, signal, timeoutMs) : tcpProbe(t.host, s.port, signal, timeoutMs);
  };
}
