/**
 * Ledger: reservations not yet reflected in the workers' reports. Pure and in memory (no clock:
 * callers pass times in).
 *
 * The rule:
 *  - A placement reserves its demand on the chosen worker under the instance's name
 *    (`<job>.instance.<n>`). Reserving the same instance again moves the reservation.
 *  - apply(worker) = the worker's latest report minus every reservation still held on it, and
 *    with the reserved instances' jobs added to `jobs` (so anti-affinity sees them too).
 *  - A reservation is dropped once a report lists the instance among its running instances
 *    (from then on the report's free amounts include it: counting it again would be double), or
 *    when it is released (undeploy, failed deploy), or when it expires (expire(): a deploy that
 *    never reported back must not hold capacity forever).
 */
import type { Demand, WorkerCandidate } from './types.ts';

export interface Reservation {
  instance: string;
  worker_id: string;
  demand: Demand;
  /** when it was made, in the caller's clock (ms); used by expire() */
  at: number;
}

export class Ledger {
  readonly #byInstance = new Map<string, Reservation>();
  readonly #byWorker = new Map<string, Map<string, Reservation>>();
  readonly #onChange: ((workerId: string) => void) | undefined;

  /** `onChange` is told the worker whenever a reservation on it is made or dropped (to keep a WorkerPool up to date). */
  constructor(onChange?: (workerId: string) => void) {
    this.#onChange = onChange;
  }

  /** Reserves `demand` for `instance` on worker `workerId` (moving any earlier reservation of it). */
  reserve(workerId: string, instance: string, demand: Demand, at = 0): Reservation {
    this.release(instance);
    const r: Reservation = { instance, worker_id: workerId, demand, at };
    this.#byInstance.set(instance, r);
    let m = this.#byWorker.get(workerId);
    if (!m) {
      m = new Map();
      this.#byWorker.set(workerId, m);
    }
    m.set(instance, r);
    this.#onChange?.(workerId);
    return r;
  }

  /** Drops the reservation of `instance` (undeploy, failed deploy). True when there was one. */
  release(instance: string): boolean {
    const r = this.#byInstance.get(instance);
    if (!r) return false;
    this.#byInstance.delete(instance);
    const m = this.#byWorker.get(r.worker_id);
    m?.delete(instance);
    if (m && m.size === 0) this.#byWorker.delete(r.worker_id);
    this.#onChange?.(r.worker_id);
    return true;
  }

  /**
   * A report arrived listing `running` instances: their reservations are now reflected in the
   * report and are dropped (on whichever worker they were held). Returns how many were dropped.
   */
  observe(running: Iterable<string>): number {
    let n = 0;
    for (const name of running) if (this.release(name)) n++;
    return n;
  }

  /** Drops reservations made before `before` (caller's clock); returns the dropped instances. */
  expire(before: number): string[] {
    const dropped: string[] = [];
    for (const r of [...this.#byInstance.values()]) {
      if (r.at < before) {
        this.release(r.instance);
        dropped.push(r.instance);
      }
    }
    return dropped;
  }

  /** Drops every reservation on a worker (it was removed or died). */
  forgetWorker(workerId: string): string[] {
    const m = this.#byWorker.get(workerId);
    if (!m) return [];
    const names = [...m.keys()];
    for (const n of names) this.release(n);
    return names;
  }

  /** The worker's report with its outstanding reservations subtracted (the same object when none). */
  apply(worker: WorkerCandidate): WorkerCandidate {
    const m = this.#byWorker.get(worker.id);
    if (!m || m.size === 0) return worker;
    let vcpus = 0;
    let memory = 0;
    let gpus = 0;
    const jobs = [...worker.jobs];
    for (const r of m.values()) {
      vcpus += r.demand.vcpus;
      memory += r.demand.memory_mb;
      gpus += r.demand.gpus;
      jobs.push(r.demand.job_name);
    }
    return {
      ...worker,
      cpu_cores_free: worker.cpu_cores_free - vcpus,
      memory_free_mb: worker.memory_free_mb - memory,
      gpus_free: worker.gpus_free - gpus,
      jobs,
    };
  }

  applyAll(workers: readonly WorkerCandidate[]): WorkerCandidate[] {
    return workers.map((w) => this.apply(w));
  }

  get(instance: string): Reservation | undefined {
    return this.#byInstance.get(instance);
  }

  onWorker(workerId: string): Reservation[] {
    return [...(this.#byWorker.get(workerId)?.values() ?? [])];
  }

  get size(): number {
    return this.#byInstance.size;
  }
}
