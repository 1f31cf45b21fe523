/**
 * The supervisor that runs every native process: a few lines of POSIX sh (dash, busybox ash, bash),
 * so it costs no extra binary and ~1 MB of memory.
 *
 * Why a supervisor: the NodeEngine may restart while instances keep running. An instance whose
 * parent has died is re-parented to init, and nobody could tell its exit code any more. The
 * wrapper is the workload's parent for its whole life, and writes `$?` to the exit file.
 *
 * Race-free cgroup placement: the wrapper first moves itself into the instance's cgroup(s) (it
 * writes its own pid into each `cgroup.procs` it is given), and only then forks the workload, so
 * everything the workload runs is born inside the cgroup, before its first instruction. If it
 * cannot join a cgroup it writes 125 to the exit file and exits.
 *
 * Two ways to start it. Started by the fork helper (forker.ts, the usual way), it is given a pid
 * file: the runtime has persisted the instance's state (without a pid yet) before asking for the
 * fork, and the wrapper writes its pid there first thing, so a runtime that dies before it learns
 * the pid finds the wrapper on restart. Spawned directly (where the helper cannot be used), it
 * gets no pid file and blocks on `read` from its stdin pipe after joining the cgroup; the runtime
 * persists the state file with the pid meanwhile and only then sends `go`. If the runtime dies
 * before `go`, the wrapper reads EOF and exits 125 without ever running the workload.
 * Why the wrapper moves itself: on cgroup v1 a move waits for an RCU grace period (4-16 ms here
 * for the three hierarchies, more under load); done by the runtime it sat on the start path.
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

export const WRAPPER_SCRIPT = [
  'exitfile=$1; pidfile=$2; ncg=$3; shift 3',
  '[ -z "$pidfile" ] || { echo $$ > "$pidfile"; } 2>/dev/null',
  'while [ "$ncg" -gt 0 ]; do',
  '  { echo $$ > "$1"; } 2>/dev/null || { echo "oak-wrap: cannot join the cgroup of $1" >&2; echo 125 > "$exitfile"; exit 125; }',
  '  shift; ncg=$((ncg - 1))',
  'done',
  'if [ -z "$pidfile" ]; then IFS= read -r go || exit 125; [ "$go" = go ] || exit 125; fi',
  'exec 0</dev/null',
  '{ echo -1000 > /proc/self/oom_score_adj; } 2>/dev/null',
  'sig=',
  "trap 'sig=15' TERM; trap 'sig=2' INT; trap 'sig=1' HUP",
  '( [ -z "$sig" ] || exit $((128 + sig)); { echo 0 > /proc/self/oom_score_adj; } 2>/dev/null; exec "$@" )',
  'echo $? > "$exitfile"',
].join('\n');

/**
 * argv after `/bin/sh`: `-c <script> oak-wrap <exitfile> <pidfile> <n> <cgroup.procs x n> <cmd...>`
 * (`cgroupProcs`: the `cgroup.procs` files the wrapper moves itself into before the workload
 * starts; `pidFile`: where it writes its pid, started by the fork helper; without one it waits for
 * `go` on stdin)
 */
export function wrapperArgs(exitFile: string, argv: string[], cgroupProcs: readonly string[] = [], pidFile = ''): string[] {
  return ['-c', WRAPPER_SCRIPT, 'oak-wrap', exitFile, pidFile, String(cgroupProcs.length), ...cgroupProcs, ...argv];
}

export { signalName } from './verdict.ts';
