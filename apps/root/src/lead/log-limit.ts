/**
 * A warning that may come in floods (junk on a notification channel): the first is logged, then
 * at most one line per `intervalMs` carrying how many were left out meanwhile (`suppressed`).
 */
import type { LeaseLog } from './leader.ts';

export function limitedWarn(log: LeaseLog, intervalMs = 1000, now: () => number = Date.now): (obj: object, msg: string) => void {
  let last = -Infinity;
  let suppressed = 0;
  return (obj, msg) => {
    const t = now();
    if (t - last < intervalMs) {
      suppressed++;
      return;
    }
    last = t;
    log.warn(suppressed > 0 ? { ...obj, suppressed } : obj, msg);
    suppressed = 0;
  };
}
