/**
 * The one exit verdict of every driver (issue 10): raw facts (the exit code the wrapper or the
 * containerd shim saw, the death signal, OOM kills in the cgroup) to one state and one wording, so
 * that an instance killed at its memory limit reads the same whether it was a container, a
 * process, a VM or a wasm module.
 */
import { constants } from 'node:os';

const SIGNAL_NAMES = new Map<number, string>(Object.entries(constants.signals).map(([name, n]) => [n, name]));

export function signalName(n: number): string {
  return SIGNAL_NAMES.get(n) ?? `signal ${n}`;
}

export interface RawExit {
  // a death by signal N as 128+N (shell and Docker convention: 137 = SIGKILL)
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
