import type { PassedStatus } from './types.ts';

/**
 * The statuses of `passed` that are steps of their own between `from` (the stored status) and `to`
 * (the new one): a passed status equal to the one before it, or to `to`, is none. What
 * updateInstance writes to the history, and what the root publishes as events before the new row.
 */
export function passedSteps(from: string, passed: readonly PassedStatus[], to: string): PassedStatus[] {
  const steps: PassedStatus[] = [];
  let before: string = from;
  for (const p of passed) {
    if (p.status === before || p.status === to) continue;
    steps.push(p);
    before = p.status;
  }
  return steps;
}
