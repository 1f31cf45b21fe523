/** What the benches read of a running process from /proc. */
import { readFileSync, readdirSync } from 'node:fs';

/** run time (ms) of every thread of `pid` (scheduler run time, /proc/<pid>/task/<tid>/schedstat) and its RSS (kB) */
export function sample(pid: number): { execMs: number; rssKb: number } {
  let execNs = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      execNs += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that just ended
    }
  }
  const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { execMs: execNs / 1e6, rssKb: Number(rss?.[1] ?? 0) };
}
