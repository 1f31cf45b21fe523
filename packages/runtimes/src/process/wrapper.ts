/**
 * The supervisor that runs every native process: a few lines of POSIX sh (dash, busybox ash, bash),
 * so it costs no extra binary and ~1 MB of memory.
 *
 * Why a supervisor: the NodeEngine may restart while instances keep running. An instance whose
 * parent has died is re-parented to init, and nobody could tell its exit code any more. The
 * wrapper is the workload's parent for its whole life, and writes `$?` to the exit file.
 *
 * Race-free cgroup placement: the wrapper starts blocked on `read` from a pipe. The runtime writes
 * the wrapper's pid into the instance's cgroup(s), persists the state file, and only then sends
 * `go`. Everything the wrapper forks afterwards (the workload and its children) is born inside
 * the cgroup, before the workload's first instruction. If the runtime dies before `go`, the
 * wrapper reads EOF and exits 125 without ever running the workload.
 *
 * Signals: the wrapper is a session and process-group leader (spawned detached = setsid), so
 * `kill(-pid)` reaches the workload and the wrapper together. The wrapper traps TERM/INT/HUP (it
 * outlives the workload to write the exit file); traps are reset in the subshell, so the workload
 * gets default dispositions (no inherited ignored signals). A signal that reaches the wrapper
 * after it set its traps but before it forked is remembered in `sig`, and the subshell then ends
 * as if killed by it instead of starting the workload (so a stop() right after start() cannot be
 * lost in that window). The wrapper sets its own
 * oom_score_adj to -1000 (where allowed) so that the OOM killer picks the workload, and the
 * workload's subshell sets it back to 0 before exec.
 *
 * Exit status: the shell reports a death by signal N as 128+N, so an exit code above 128 reads as
 * a signal (the convention of shells and Docker: 137 = SIGKILL). A workload that calls exit(137)
 * by itself is reported as killed by SIGKILL; that ambiguity is the price of a shell supervisor.
 */
import { constants } from 'node:os';

export const WRAPPER_SCRIPT = [
  'exitfile=$1; shift',
  'IFS= read -r go || exit 125',
  '[ "$go" = go ] || exit 125',
  'exec 0</dev/null',
  '{ echo -1000 > /proc/self/oom_score_adj; } 2>/dev/null',
  'sig=',
  "trap 'sig=15' TERM; trap 'sig=2' INT; trap 'sig=1' HUP",
  '( [ -z "$sig" ] || exit $((128 + sig)); { echo 0 > /proc/self/oom_score_adj; } 2>/dev/null; exec "$@" )',
  'echo $? > "$exitfile"',
].join('\n');

/** argv for child_process.spawn: `/bin/sh -c <script> oak-wrap <exitfile> <cmd...>` */
export function wrapperArgs(exitFile: string, argv: string[]): string[] {
  return ['-c', WRAPPER_SCRIPT, 'oak-wrap', exitFile, ...argv];
}

const SIGNAL_NAMES = new Map<number, string>(Object.entries(constants.signals).map(([name, n]) => [n, name]));

export function signalName(n: number): string {
  return SIGNAL_NAMES.get(n) ?? `signal ${n}`;
}

export interface RawExit {
  /** what the wrapper wrote, or undefined when it left no exit file (it was killed itself) */
  code: number | undefined;
  /** the wrapper's own death signal, when we were its parent and saw it die */
  wrapperSignal?: string | undefined;
  oomKills: number;
  memoryLimitMb?: number | undefined;
  oneShot: boolean;
  /** why no status is known, when `code` and `wrapperSignal` are both missing */
  lostReason?: string | undefined;
}

export interface ExitVerdict {
  exit_code: number;
  state: 'COMPLETED' | 'FAILED';
  detail: string;
  signal?: string | undefined;
}

/** Turns what the wrapper reported (plus the cgroup's OOM count) into the instance's end state. */
export function interpretExit(r: RawExit): ExitVerdict {
  const limit = r.memoryLimitMb !== undefined && r.memoryLimitMb > 0 ? ` at the ${fmtMb(r.memoryLimitMb)} MB limit` : '';
  let exit_code: number;
  let signal: string | undefined;
  if (r.code !== undefined) {
    exit_code = r.code;
    if (r.code > 128 && r.code < 128 + 65) signal = signalName(r.code - 128);
  } else if (r.wrapperSignal !== undefined) {
    signal = r.wrapperSignal;
    const n = constants.signals[r.wrapperSignal as NodeJS.Signals] as number | undefined;
    exit_code = n === undefined ? -1 : 128 + n;
  } else {
    exit_code = -1;
  }
  if (r.oomKills > 0) {
    if (signal === 'SIGKILL' || exit_code === -1) return { exit_code: exit_code === -1 ? 137 : exit_code, state: 'FAILED', detail: `out of memory: killed${limit}`, signal: 'SIGKILL' };
    const what = signal !== undefined ? `killed by signal ${signal}` : `exited with code ${exit_code}`;
    return { exit_code, state: 'FAILED', detail: `${what} (out of memory: ${r.oomKills} process${r.oomKills > 1 ? 'es' : ''} killed${limit})`, signal };
  }
  if (exit_code === 0) return r.oneShot ? { exit_code, state: 'COMPLETED', detail: 'completed' } : { exit_code, state: 'FAILED', detail: 'exited with code 0' };
  if (signal !== undefined) return { exit_code, state: 'FAILED', detail: `killed by signal ${signal}`, signal };
  if (exit_code === -1) return { exit_code, state: 'FAILED', detail: `exited; exit status unknown (${r.lostReason ?? 'its supervisor was killed'})` };
  return { exit_code, state: 'FAILED', detail: `exited with code ${exit_code}` };
}

function fmtMb(mb: number): string {
  return Number.isInteger(mb) ? String(mb) : mb.toFixed(1);
}
