/**
 * Per-instance CPU and memory readings (issue 11: the dashboard's charts).
 *
 * Path: NodeEngine `nodes/{id}/jobs/resources` → its cluster keeps the last reading per worker and
 * sends the readings of the instances it placed on that worker in each aggregate (`usage`, every
 * aggregate interval, 5 s by default) → the root that holds the link checks each reading against
 * the store (the instance exists and its cluster is the sender) and publishes one `metrics` event
 * per service (chunked) → every root's UsageBook (this root's own events and, on PostgreSQL, the
 * other roots' through the event bridge) keeps a bounded ring per instance.
 *
 * Why memory and not the store: readings arrive every few seconds per instance and are worth
 * nothing an hour later; writing them to the one store all state shares would multiply its writes
 * for data nobody needs after a restart. So the history is lost when a root restarts (a chart
 * starts empty and fills again within one aggregate interval), and a follower root holds what
 * arrived since it started. Bounded: at most `maxSamples` readings per instance and
 * `maxInstances` instances (the one updated longest ago goes first).
 */
import type { InstanceUsage, OakEvent, UsageSample } from '@oak/contracts';
import type { ServiceRow, Store } from '@oak/store';
import type { EventHub } from './events.ts';

/** 10 minutes at the default 5 s aggregate interval */
export const DEFAULT_USAGE_SAMPLES = 120;
/**
 * Instances the book keeps readings for: issue 13's root holds 10,000 instances, so twice that
 * (a ring is about 3 KB: 120 readings of 3 numbers)
 */
export const DEFAULT_USAGE_INSTANCES = 20_000;
/** Oakestra keeps the last 100 readings per instance (cpu_history, memory_history) */
export const OAKESTRA_HISTORY = 100;
/** instances per metrics event: keeps each event far below the event bridge's 7,000 bytes */
export const METRICS_EVENT_CHUNK = 50;

type MetricsEvent = Extract<OakEvent, { type: 'metrics' }>;

/** a reading as Oakestra shows it: two decimals (instance documents, as objects and as text) */
export const round2 = (v: number): number => Math.round(v * 100) / 100;

/**
 * Oakestra's usage fields of one instance as JSON text (what the serializer of InstanceDocSchema
 * writes for them): `cpu_percent`, `memory_percent` (numbers or null), `cpu_history`,
 * `memory_history` (arrays of `{"value":..,"timestamp":".."}`).
 */
export interface UsageJson {
  cpu_percent: string;
  memory_percent: string;
  cpu_history: string;
  memory_history: string;
}

const point = (value: string, iso: string): string => `{"value":${value},"timestamp":"${iso}"}`;

/** the usage fields from readings (oldest first; the last OAKESTRA_HISTORY count), `memoryMb`: the SLA's memory (0/undefined: none) */
export function usageJsonOf(samples: readonly UsageSample[], memoryMb: number | undefined): UsageJson {
  const list = samples.slice(-OAKESTRA_HISTORY);
  const mem = memoryMb !== undefined && memoryMb > 0 ? memoryMb : undefined;
  const last = list[list.length - 1];
  const times = list.map((u) => new Date(u.at).toISOString());
  return {
    cpu_percent: last === undefined ? 'null' : String(round2(last.cpu_percent)),
    memory_percent: last === undefined || mem === undefined ? 'null' : String(round2((last.memory_mb / mem) * 100)),
    cpu_history: `[${list.map((u, k) => point(String(round2(u.cpu_percent)), times[k] as string)).join(',')}]`,
    memory_history: mem === undefined ? '[]' : `[${list.map((u, k) => point(String(round2((u.memory_mb / mem) * 100)), times[k] as string)).join(',')}]`,
  };
}

const EMPTY_USAGE: UsageJson = { cpu_percent: 'null', memory_percent: 'null', cpu_history: '[]', memory_history: '[]' };

/**
 * The text of round2(v), shared: readings are percents with two decimals, so at most 100,001
 * texts up to 1000.00 (filled as met) stand for every reading of every instance; a string per
 * reading would cost 10,000 instances x 200 points about 100 MB.
 */
const NUM_TEXT_MAX = 100_000;
const numTexts: (string | undefined)[] = [];
function num(v: number): string {
  const k = Math.round(v * 100);
  if (!(k >= 0 && k <= NUM_TEXT_MAX)) return String(k / 100);
  return (numTexts[k] ??= String(k / 100));
}

/** ISO texts of reading times, shared (the readings of one aggregate share theirs): bounded, the oldest forgotten first */
const ISO_MAX = 8192;
const isoTexts = new Map<number, string>();
function iso(at: number): string {
  let t = isoTexts.get(at);
  if (t === undefined) {
    t = new Date(at).toISOString();
    if (isoTexts.size >= ISO_MAX) isoTexts.delete(isoTexts.keys().next().value as number);
    isoTexts.set(at, t);
  }
  return t;
}

class Ring {
  readonly at: Float64Array;
  readonly cpu: Float64Array;
  readonly mem: Float64Array;
  next = 0;
  size = 0;
  constructor(cap: number) {
    this.at = new Float64Array(cap);
    this.cpu = new Float64Array(cap);
    this.mem = new Float64Array(cap);
  }
  push(at: number, cpu: number, mem: number): void {
    const cap = this.at.length;
    this.at[this.next] = at;
    this.cpu[this.next] = cpu;
    this.mem[this.next] = mem;
    this.next = (this.next + 1) % cap;
    this.size = Math.min(cap, this.size + 1);
  }
  samples(): UsageSample[] {
    const cap = this.at.length;
    const out: UsageSample[] = [];
    for (let i = 0; i < this.size; i++) {
      const k = (this.next - this.size + i + cap) % cap;
      out.push({ at: this.at[k] ?? 0, cpu_percent: this.cpu[k] ?? 0, memory_mb: this.mem[k] ?? 0 });
    }
    return out;
  }
  /** usageJsonOf(samples(), memoryMb), from the shared texts instead of 200 objects */
  json(memoryMb: number | undefined): UsageJson {
    const cap = this.at.length;
    const n = Math.min(this.size, OAKESTRA_HISTORY);
    if (n === 0) return EMPTY_USAGE;
    const mem = memoryMb !== undefined && memoryMb > 0 ? memoryMb : 0;
    let cpuH = '[';
    let memH = '[';
    for (let i = 0; i < n; i++) {
      const k = (this.next - n + i + cap) % cap;
      const sep = i === 0 ? '' : ',';
      const t = iso(this.at[k] ?? 0);
      cpuH += `${sep}{"value":${num(this.cpu[k] ?? 0)},"timestamp":"${t}"}`;
      if (mem > 0) memH += `${sep}{"value":${num(((this.mem[k] ?? 0) / mem) * 100)},"timestamp":"${t}"}`;
    }
    const last = (this.next - 1 + cap) % cap;
    return {
      cpu_percent: num(this.cpu[last] ?? 0),
      memory_percent: mem > 0 ? num(((this.mem[last] ?? 0) / mem) * 100) : 'null',
      cpu_history: `${cpuH}]`,
      memory_history: `${memH}]`,
    };
  }
}

const key = (serviceId: string, n: number): string => `${serviceId}\u0000${n}`;

export interface UsageBookOptions {
  maxSamples?: number;
  maxInstances?: number;
}

/** The bounded in-memory history of instance readings, filled from `metrics` events. */
export class UsageBook {
  readonly maxSamples: number;
  readonly maxInstances: number;
  /** insertion order = least recently updated first (re-inserted on each reading) */
  readonly #rings = new Map<string, Ring>();
  readonly #unsubscribe: () => void;

  constructor(events: EventHub, o: UsageBookOptions = {}) {
    this.maxSamples = Math.max(1, Math.floor(o.maxSamples ?? DEFAULT_USAGE_SAMPLES));
    this.maxInstances = Math.max(1, Math.floor(o.maxInstances ?? DEFAULT_USAGE_INSTANCES));
    this.#unsubscribe = events.subscribe((e) => {
      if (e.type === 'metrics') this.record(e);
    });
  }

  record(e: MetricsEvent): void {
    // a time no ISO text exists for (out of range, NaN) is no reading
    if (!Number.isFinite(new Date(e.at).getTime())) return;
    for (const r of e.instances) {
      if (!Number.isInteger(r.instance_number) || r.instance_number < 0 || !Number.isFinite(r.cpu_percent) || !Number.isFinite(r.memory_mb)) continue;
      const k = key(e.microserviceID, r.instance_number);
      let ring = this.#rings.get(k);
      if (ring) this.#rings.delete(k);
      else {
        ring = new Ring(this.maxSamples);
        while (this.#rings.size >= this.maxInstances) {
          const oldest = this.#rings.keys().next().value;
          if (oldest === undefined) break;
          this.#rings.delete(oldest);
        }
      }
      ring.push(e.at, Math.max(0, r.cpu_percent), Math.max(0, r.memory_mb));
      this.#rings.set(k, ring);
    }
  }

  /** an instance's readings, oldest first ([] when none arrived) */
  history(serviceId: string, n: number): UsageSample[] {
    return this.#rings.get(key(serviceId, n))?.samples() ?? [];
  }

  /** an instance's usage fields as JSON text for the SLA memory `memoryMb` (from shared number and time texts) */
  usageJson(serviceId: string, n: number, memoryMb: number | undefined): UsageJson {
    return this.#rings.get(key(serviceId, n))?.json(memoryMb) ?? EMPTY_USAGE;
  }

  /** readings kept for so many instances (metrics, tests) */
  get instances(): number {
    return this.#rings.size;
  }

  close(): void {
    this.#unsubscribe();
    this.#rings.clear();
  }
}

export interface UsageIntakeOptions {
  store: Pick<Store, 'listInstances' | 'getServiceByJobName'>;
  events: Pick<EventHub, 'publish'>;
  now?: () => number;
  log?: { warn(obj: object, msg: string): void };
}

/**
 * The readings of one aggregate → metrics events. A reading is kept only when the store has the
 * instance placed on the sending cluster (a cluster cannot chart another cluster's instances nor
 * invent any); at most one intake per cluster runs at a time (the next aggregate brings fresher
 * readings, so one that arrives meanwhile is dropped).
 */
export function usageIntake(o: UsageIntakeOptions): (clusterId: string, readings: readonly InstanceUsage[]) => void {
  const now = o.now ?? Date.now;
  const busy = new Set<string>();
  /** job name → service; bounded, refreshed when it grows past the cap */
  const jobs = new Map<string, ServiceRow | null>();
  const service = async (job: string): Promise<ServiceRow | undefined> => {
    if (!jobs.has(job)) {
      if (jobs.size >= 10_000) jobs.clear();
      jobs.set(job, (await o.store.getServiceByJobName(job)) ?? null);
    }
    return jobs.get(job) ?? undefined;
  };
  const run = async (clusterId: string, readings: readonly InstanceUsage[]): Promise<void> => {
    const at = now();
    const placed = new Set<string>();
    for (const r of await o.store.listInstances({ cluster_id: clusterId })) {
      if (r.cluster_id === clusterId && r.desired !== 'stop') placed.add(key(r.service_id, r.instance_number));
    }
    const byService = new Map<string, { s: ServiceRow; list: MetricsEvent['instances']; seen: Set<number> }>();
    for (const r of readings) {
      let s = await service(r.job_name);
      // a job name the cache knew under another service (deleted and created again): read it afresh
      if (s && !placed.has(key(s.id, r.instance_number))) {
        jobs.delete(r.job_name);
        s = await service(r.job_name);
      }
      if (!s || !placed.has(key(s.id, r.instance_number))) continue;
      let g = byService.get(s.id);
      if (!g) byService.set(s.id, (g = { s, list: [], seen: new Set() }));
      if (g.seen.has(r.instance_number)) continue;
      g.seen.add(r.instance_number);
      g.list.push({ instance_number: r.instance_number, cpu_percent: r.cpu_percent, memory_mb: r.memory_mb });
    }
    for (const { s, list } of byService.values()) {
      for (let i = 0; i < list.length; i += METRICS_EVENT_CHUNK) {
        o.events.publish({ type: 'metrics', microserviceID: s.id, applicationID: s.application_id, job_name: s.job_name, at, instances: list.slice(i, i + METRICS_EVENT_CHUNK) });
      }
    }
  };
  return (clusterId, readings) => {
    if (readings.length === 0 || busy.has(clusterId)) return;
    busy.add(clusterId);
    void run(clusterId, readings)
      .catch((err: unknown) => o.log?.warn({ err: err instanceof Error ? err.message : String(err), cluster_id: clusterId }, 'usage: readings of an aggregate were dropped'))
      .finally(() => busy.delete(clusterId));
  };
}
