/**
 * The fork helper: a small `/bin/sh` co-process (shown as `oak-forker`) that starts the
 * supervisor's wrappers, so that the runtime's event loop never forks itself (issue 9).
 *
 * Why: `child_process.spawn` forks the calling process, and the fork copies its page tables, so
 * its cost grows with the caller's memory: 1.75 ms at 47 MB RSS, 4.6 ms at 152 MB (the 1-DOC),
 * 16 ms at 468 MB, with the event loop blocked the whole time. The helper is a ~1 MB shell: it
 * forks in a fraction of a millisecond, on another core, and the loop only writes one line to a
 * pipe and reads one back.
 *
 * One request is one line of shell:
 *
 *   if [ -d <cwd> ]; then
 *     ( cd <cwd> && exec env -i --default-signal -- K=V ... setsid <argv...> ) </dev/null >><log> 2>&1 &
 *     echo "<seq> $!"
 *   else echo "<seq> E"; fi
 *
 * - The wrapper is the helper's background job, and its pid is `$!`: the subshell, env and setsid
 *   exec in the same process (setsid forks only for a process-group leader, which a background job
 *   of a shell without job control is not).
 * - The helper reaps: a shell collects its ended children when it reads its next command, so the
 *   supervisor sends an empty command (`reap()`) when it sees an instance end or stops one. (Left
 *   to init, a dead wrapper would stay a zombie for as long as init takes: about 2 s on some
 *   machines, for ever where a NodeEngine is PID 1 of a container without an init.)
 * - A background job of a non-interactive shell starts with SIGINT and SIGQUIT ignored, and a
 *   shell cannot undo that for its children; `env --default-signal` (GNU coreutils 8.31+) resets
 *   every disposition before the exec, so the workload gets the defaults it would get from
 *   spawn(). Where env lacks the option (busybox, older coreutils) the helper says so at start
 *   and the supervisor spawns directly, as before.
 * - `env -i` gives the wrapper exactly the environment asked for; every word is single-quoted,
 *   and a NUL byte (which no argv or environment can carry) is refused before anything is sent.
 *   The wrapper's script is the same every time: the helper holds it in a variable, set once, and
 *   a request names it (`"$W"`), which keeps each request a few hundred bytes.
 *
 * The helper reads its commands from a pipe: when this process ends, however it ends, the pipe
 * closes and the helper exits; instances it started run on (they are their own sessions).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { RuntimeError } from '../types.ts';
import { WRAPPER_SCRIPT } from './wrapper.ts';

export interface ForkRequest {
  /** argv[0] is the program (an absolute path or a name on `env`'s PATH) */
  argv: readonly string[];
  cwd: string;
  env: Readonly<Record<string, string>>;
  /** stdout and stderr are appended to this file */
  log: string;
}

/** how long a request may wait for its pid before the helper is taken for stuck (and restarted) */
const REPLY_TIMEOUT_MS = 10_000;

const quote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

function firstOf(paths: readonly string[]): string | undefined {
  return paths.find((p) => existsSync(p));
}

interface Pending {
  resolve: (pid: number) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class Forker {
  readonly #env: string;
  readonly #setsid: string;
  #child: ChildProcess | undefined;
  /** resolves once the helper said whether `env --default-signal` works */
  #ready: Promise<boolean> | undefined;
  #usable: boolean | undefined;
  /** the helper has not yet said whether it works */
  #awaiting = false;
  #seq = 0;
  #buf = '';
  readonly #pending = new Map<number, Pending>();

  constructor(tools: { env: string; setsid: string }) {
    this.#env = tools.env;
    this.#setsid = tools.setsid;
  }

  /** Starts the helper if needed; false where it cannot be used (the caller spawns directly). */
  usable(): Promise<boolean> {
    if (this.#usable === false) return Promise.resolve(false);
    this.#ready ??= this.#start();
    return this.#ready;
  }

  #start(): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      let child: ChildProcess;
      try {
        child = spawn('/bin/sh', ['-s'], { argv0: 'oak-forker', stdio: ['pipe', 'pipe', 'ignore'], detached: true, env: { PATH: '/usr/bin:/bin' } });
      } catch {
        this.#usable = false;
        resolve(false);
        return;
      }
      this.#child = child;
      let said = false;
      const say = (ok: boolean): void => {
        if (said) return;
        said = true;
        this.#awaiting = false;
        this.#usable = ok;
        this.#ref();
        resolve(ok);
      };
      child.once('error', () => {
        this.#gone(child, 'the fork helper could not start');
        say(false);
      });
      child.once('exit', () => {
        this.#gone(child, 'the fork helper exited');
        say(false);
      });
      child.stdin?.on('error', () => undefined);
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', (d: string) => {
        this.#buf += d;
        for (let i = this.#buf.indexOf('\n'); i >= 0; i = this.#buf.indexOf('\n')) {
          const line = this.#buf.slice(0, i);
          this.#buf = this.#buf.slice(i + 1);
          if (line === 'ready ok') say(true);
          else if (line === 'ready no') say(false);
          else this.#reply(line);
        }
      });
      // the helper must not keep this process alive; a pending request refs it (see #ref)
      child.unref();
      this.#awaiting = true;
      this.#ref();
      child.stdin?.write(`W=${quote(WRAPPER_SCRIPT)}\nif ${quote(this.#env)} --default-signal true 2>/dev/null; then echo 'ready ok'; else echo 'ready no'; fi\n`);
    });
  }

  /** the pipes keep the event loop alive only while a request (or the start) waits for its answer */
  #ref(): void {
    const busy = this.#awaiting || this.#pending.size > 0;
    for (const s of [this.#child?.stdout, this.#child?.stdin] as unknown as ({ ref?: () => void; unref?: () => void } | null | undefined)[]) {
      if (busy) s?.ref?.();
      else s?.unref?.();
    }
  }

  #reply(line: string): void {
    const sp = line.indexOf(' ');
    const seq = Number(line.slice(0, sp));
    const p = this.#pending.get(seq);
    if (p === undefined) return;
    this.#pending.delete(seq);
    clearTimeout(p.timer);
    const rest = line.slice(sp + 1);
    const pid = Number(rest);
    if (Number.isInteger(pid) && pid > 0) p.resolve(pid);
    else p.reject(new RuntimeError('spawn_failed', 'cannot enter the working directory'));
    this.#ref();
  }

  #gone(child: ChildProcess, why: string): void {
    if (this.#child !== child) return;
    this.#child = undefined;
    this.#buf = '';
    // the next request starts a new helper (unless this one never worked)
    if (this.#usable === true) {
      this.#ready = undefined;
      this.#usable = undefined;
    }
    for (const [seq, p] of this.#pending) {
      clearTimeout(p.timer);
      this.#pending.delete(seq);
      p.reject(new RuntimeError('spawn_failed', why));
    }
  }

  /**
   * Starts `argv` in a session of its own with exactly `env`, stdin /dev/null, stdout and stderr
   * appended to `log`; resolves with its pid once it is forked (before it execs).
   */
  async spawn(req: ForkRequest): Promise<number> {
    const words = [req.cwd, req.log, ...req.argv, ...Object.entries(req.env).flat()];
    if (words.some((w) => w.includes('\0'))) throw new RuntimeError('invalid_spec', 'an argument or environment variable contains a NUL byte');
    for (const k of Object.keys(req.env)) {
      if (k === '' || k.includes('=')) throw new RuntimeError('invalid_spec', `environment variable name ${JSON.stringify(k)} is not valid`);
    }
    if (req.argv.length === 0) throw new RuntimeError('invalid_spec', 'nothing to run');
    if (!(await this.usable())) throw new RuntimeError('spawn_failed', 'the fork helper is not usable here');
    const child = this.#child;
    if (child?.stdin == null) throw new RuntimeError('spawn_failed', 'the fork helper exited');
    const seq = ++this.#seq;
    const env = Object.entries(req.env).map(([k, v]) => quote(`${k}=${v}`)).join(' ');
    const cwd = quote(req.cwd);
    const line = `if [ -d ${cwd} ]; then ( cd ${cwd} && exec ${quote(this.#env)} -i --default-signal -- ${env} ${quote(this.#setsid)} ${req.argv.map((w) => (w === WRAPPER_SCRIPT ? '"$W"' : quote(w))).join(' ')} ) </dev/null >>${quote(req.log)} 2>&1 & echo "${seq} $!"; else echo "${seq} E"; fi\n`;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(seq);
        reject(new RuntimeError('spawn_failed', `the fork helper did not answer within ${REPLY_TIMEOUT_MS} ms`));
        // a helper that does not answer is of no use: the next request starts a fresh one
        try {
          child.kill('SIGKILL');
        } catch {
          /* gone */
        }
      }, REPLY_TIMEOUT_MS);
      this.#pending.set(seq, { resolve, reject, timer });
      this.#ref();
      child.stdin?.write(line);
    });
  }

  /** Has the helper collect its ended children (zombies) now. */
  reap(): void {
    if (this.#usable === true) this.#child?.stdin?.write(':\n');
  }

  /** the helper's pid (tests) */
  get pid(): number | undefined {
    return this.#child?.pid;
  }
}

let shared: Forker | null | undefined;

/** The process's one fork helper; null where env or setsid is missing (spawn directly). */
export function sharedForker(): Forker | null {
  if (shared === undefined) {
    const env = firstOf(['/usr/bin/env', '/bin/env']);
    const setsid = firstOf(['/usr/bin/setsid', '/bin/setsid', '/usr/sbin/setsid', '/sbin/setsid']);
    shared = env !== undefined && setsid !== undefined ? new Forker({ env, setsid }) : null;
  }
  return shared;
}
