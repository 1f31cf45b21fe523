/**
 * Logs that outlive their instance (issue 10 point 9). When an instance that ended (COMPLETED,
 * FAILED) is cleaned up, or one is undeployed, its driver moves the log file here instead of
 * deleting it (Runtime.stop's `keepLog`); the keeper caps it, remembers it in an index in the data
 * dir (so it survives a NodeEngine restart) and answers log requests for it until it expires.
 *
 * Limits: a retention period after the instance ended, a cap per instance (the newest bytes are
 * kept, the start is cut at a line boundary with a note) and a cap in total (the logs of the
 * instances that ended first are dropped first). What was dropped is remembered (bounded) so that
 * a later request is told which logs, why and since when, instead of "unknown".
 *
 * The clock is passed in; `sweep()` is called by the NodeEngine on a timer and by tests.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

export const DEFAULT_LOG_RETENTION_MS = 24 * 3600_000;
export const DEFAULT_LOG_KEEP_INSTANCE_BYTES = 8 * 1024 * 1024;
export const DEFAULT_LOG_KEEP_TOTAL_BYTES = 256 * 1024 * 1024;
/** drop records remembered at most (oldest forgotten first) */
export const MAX_DROPPED_RECORDS = 1000;
/** a drop record is forgotten this long after the drop */
export const DROPPED_RECORD_MS = 7 * 24 * 3600_000;
const MAX_ID = 512;
const INDEX = 'index.json';

export type DropReason = 'expired' | 'total_cap' | 'missing';

export interface KeptLog {
  /** instance name `<job_name>.instance.<n>` */
  id: string;
  /** final state of the run: COMPLETED, FAILED, or what it was when undeployed */
  status: string;
  /** epoch ms: when the instance ended (or was undeployed) */
  ended_at: number;
  /** bytes of the kept file */
  bytes: number;
  /** bytes cut from its start (per-instance cap) */
  cut: number;
}

export interface DroppedLog {
  id: string;
  ended_at: number;
  dropped_at: number;
  reason: DropReason;
}

export interface KeptLogsOptions {
  /** the directory (created 0700), e.g. `<dataDir>/kept-logs` */
  dir: string;
  retentionMs?: number;
  perInstanceBytes?: number;
  totalBytes?: number;
  now?: () => number;
  warn?: (msg: string) => void;
}

export type Lookup =
  | { kind: 'kept'; log: KeptLog; path: string }
  | { kind: 'dropped'; drop: DroppedLog }
  | { kind: 'unknown' };

interface IndexFile {
  v: 1;
  kept: KeptLog[];
  dropped: DroppedLog[];
}

export function fileNameOf(id: string): string {
  return `${createHash('sha256').update(id).digest('hex').slice(0, 40)}.log`;
}

const isNum = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0;
const isId = (x: unknown): x is string => typeof x === 'string' && x.length > 0 && x.length <= MAX_ID;

/** The entries of an index file that make sense (a damaged or foreign file loses only its bad entries). */
export function parseIndex(raw: unknown): IndexFile {
  const out: IndexFile = { v: 1, kept: [], dropped: [] };
  if (typeof raw !== 'object' || raw === null) return out;
  const o = raw as Record<string, unknown>;
  const seen = new Set<string>();
  for (const k of Array.isArray(o['kept']) ? (o['kept'] as unknown[]) : []) {
    if (typeof k !== 'object' || k === null) continue;
    const e = k as Record<string, unknown>;
    if (!isId(e['id']) || seen.has(e['id']) || typeof e['status'] !== 'string' || e['status'].length > 64 || !isNum(e['ended_at']) || !isNum(e['bytes']) || !isNum(e['cut'])) continue;
    seen.add(e['id']);
    out.kept.push({ id: e['id'], status: e['status'], ended_at: e['ended_at'], bytes: e['bytes'], cut: e['cut'] });
  }
  for (const d of Array.isArray(o['dropped']) ? (o['dropped'] as unknown[]).slice(-MAX_DROPPED_RECORDS) : []) {
    if (typeof d !== 'object' || d === null) continue;
    const e = d as Record<string, unknown>;
    const reason = e['reason'];
    if (!isId(e['id']) || !isNum(e['ended_at']) || !isNum(e['dropped_at']) || (reason !== 'expired' && reason !== 'total_cap' && reason !== 'missing')) continue;
    out.dropped.push({ id: e['id'], ended_at: e['ended_at'], dropped_at: e['dropped_at'], reason });
  }
  return out;
}

export class KeptLogs {
  readonly dir: string;
  readonly retentionMs: number;
  readonly perInstanceBytes: number;
  readonly totalBytes: number;
  readonly #now: () => number;
  readonly #warn: (msg: string) => void;
  #kept = new Map<string, KeptLog>();
  #dropped: DroppedLog[] = [];
  /** every change runs after the one before (index writes in order) */
  #chain: Promise<unknown> = Promise.resolve();

  constructor(o: KeptLogsOptions) {
    this.dir = o.dir;
    this.retentionMs = o.retentionMs ?? DEFAULT_LOG_RETENTION_MS;
    this.perInstanceBytes = o.perInstanceBytes ?? DEFAULT_LOG_KEEP_INSTANCE_BYTES;
    this.totalBytes = o.totalBytes ?? DEFAULT_LOG_KEEP_TOTAL_BYTES;
    this.#now = o.now ?? Date.now;
    this.#warn = o.warn ?? (() => {});
  }

  /** Reads the index (what a previous NodeEngine kept); removes files it does not list. */
  async load(): Promise<void> {
    return this.#serial(async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      let raw: unknown;
      try {
        raw = JSON.parse(await readFile(join(this.dir, INDEX), 'utf8'));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#warn(`kept logs: the index could not be read (${err instanceof Error ? err.message : String(err)}); starting empty`);
      }
      const idx = parseIndex(raw);
      this.#kept = new Map();
      this.#dropped = idx.dropped;
      for (const k of idx.kept) {
        const size = await stat(join(this.dir, fileNameOf(k.id))).then((s) => s.size, () => undefined);
        if (size === undefined) {
          this.#drop(k, 'missing');
          continue;
        }
        this.#kept.set(k.id, { ...k, bytes: size });
      }
      // files without an entry: a crash between moving a log here and writing the index
      const listed = new Set([...this.#kept.keys()].map(fileNameOf));
      for (const f of await readdir(this.dir)) {
        if (f === INDEX || listed.has(f)) continue;
        await rm(join(this.dir, f), { force: true, recursive: true });
      }
      await this.#expire();
      await this.#write();
    });
  }

  /** where a driver should move the log of `id` (Runtime.stop's keepLog); take() picks it up */
  incomingPath(id: string): string {
    return join(this.dir, `incoming-${fileNameOf(id)}`);
  }

  /**
   * Takes the log file a driver left at `incomingPath(id)` (nothing there: nothing kept). The
   * previous kept log of the same instance is replaced.
   */
  async take(id: string, status: string, endedAt: number): Promise<KeptLog | undefined> {
    if (!isId(id)) return undefined;
    return this.#serial(async () => {
      const incoming = this.incomingPath(id);
      const st = await stat(incoming).catch(() => undefined);
      if (st === undefined) return undefined;
      if (this.retentionMs <= 0 || this.totalBytes <= 0 || this.perInstanceBytes <= 0) {
        await rm(incoming, { force: true });
        return undefined;
      }
      const final = join(this.dir, fileNameOf(id));
      const cut = await capInto(incoming, final, st.size, this.perInstanceBytes);
      const size = (await stat(final)).size;
      const prev = this.#kept.get(id);
      if (prev !== undefined) this.#kept.delete(id);
      const k: KeptLog = { id, status: status.slice(0, 64), ended_at: endedAt, bytes: size, cut };
      this.#kept.set(id, k);
      this.#dropped = this.#dropped.filter((d) => d.id !== id);
      await this.#enforceTotal(id);
      await this.#expire();
      await this.#write();
      return this.#kept.get(id);
    });
  }

  lookup(id: string): Lookup {
    const k = this.#kept.get(id);
    if (k !== undefined) return { kind: 'kept', log: k, path: join(this.dir, fileNameOf(id)) };
    for (let i = this.#dropped.length - 1; i >= 0; i--) {
      const d = this.#dropped[i] as DroppedLog;
      if (d.id === id) return { kind: 'dropped', drop: d };
    }
    return { kind: 'unknown' };
  }

  /** Drops what is past the retention period; returns the next expiry time (undefined: nothing kept). */
  async sweep(): Promise<number | undefined> {
    return this.#serial(async () => {
      if (await this.#expire()) await this.#write();
      let next: number | undefined;
      for (const k of this.#kept.values()) next = Math.min(next ?? Infinity, k.ended_at + this.retentionMs);
      return next;
    });
  }

  /** what is kept, oldest end first */
  list(): KeptLog[] {
    return [...this.#kept.values()].sort((a, b) => a.ended_at - b.ended_at);
  }

  get bytes(): number {
    let n = 0;
    for (const k of this.#kept.values()) n += k.bytes;
    return n;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#chain.then(fn);
    this.#chain = p.catch(() => undefined);
    return p;
  }

  #drop(k: Pick<KeptLog, 'id' | 'ended_at'>, reason: DropReason): void {
    this.#kept.delete(k.id);
    this.#dropped.push({ id: k.id, ended_at: k.ended_at, dropped_at: this.#now(), reason });
  }

  async #remove(k: KeptLog, reason: DropReason): Promise<void> {
    this.#drop(k, reason);
    await rm(join(this.dir, fileNameOf(k.id)), { force: true });
  }

  /** true when something changed */
  async #expire(): Promise<boolean> {
    const now = this.#now();
    let changed = false;
    for (const k of this.list()) {
      if (k.ended_at + this.retentionMs > now) continue;
      await this.#remove(k, 'expired');
      changed = true;
    }
    const n = this.#dropped.length;
    this.#dropped = this.#dropped.filter((d) => d.dropped_at + DROPPED_RECORD_MS > now).slice(-MAX_DROPPED_RECORDS);
    return changed || this.#dropped.length !== n;
  }

  /** the instances that ended first go first; `keep` (the newest) goes last */
  async #enforceTotal(keep: string): Promise<void> {
    let total = this.bytes;
    const order = this.list().filter((k) => k.id !== keep);
    const last = this.#kept.get(keep);
    if (last !== undefined) order.push(last);
    for (const k of order) {
      if (total <= this.totalBytes) break;
      total -= k.bytes;
      await this.#remove(k, 'total_cap');
    }
  }

  async #write(): Promise<void> {
    const body: IndexFile = { v: 1, kept: this.list(), dropped: this.#dropped };
    const tmp = join(this.dir, `${INDEX}.tmp`);
    await writeFile(tmp, JSON.stringify(body), { mode: 0o600 });
    await rename(tmp, join(this.dir, INDEX));
  }
}

/**
 * Writes the last `cap` bytes of `src` (size `size`) to `dst`, starting at a line boundary, with a
 * note line for what was cut; removes `src`. Returns the bytes cut.
 */
async function capInto(src: string, dst: string, size: number, cap: number): Promise<number> {
  if (size <= cap) {
    await rename(src, dst);
    return 0;
  }
  let start = size - cap;
  // start after the first newline at or after the cut (a line is not shown half)
  const fh = await open(src, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    let pos = start;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) {
        start = size;
        break;
      }
      const nl = buf.subarray(0, bytesRead).indexOf(0x0a);
      if (nl >= 0) {
        start = pos + nl + 1;
        break;
      }
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  const note = `# oak: the first ${start} bytes of this log were dropped (at most ${cap} bytes are kept per ended instance)\n`;
  const tmp = `${dst}.tmp`;
  const out = createWriteStream(tmp, { mode: 0o600 });
  out.write(note);
  if (start < size) await pipeline(createReadStream(src, { start }), out);
  else await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  await rename(tmp, dst);
  await rm(src, { force: true });
  return start;
}

/** A person's wording of when (UTC, to the second). */
export function when(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A duration as a person says it: 24 h, 90 min, 45 s. */
export function spoken(ms: number): string {
  if (ms % 86_400_000 === 0 && ms >= 86_400_000) return `${ms / 86_400_000} d`;
  if (ms % 3600_000 === 0 && ms >= 3600_000) return `${ms / 3600_000} h`;
  if (ms % 60_000 === 0 && ms >= 60_000) return `${ms / 60_000} min`;
  return `${Math.round(ms / 1000)} s`;
}

/** Why a request finds no kept logs of `id` on worker `worker` (for the log answer). */
export function droppedReason(d: DroppedLog, worker: string, k: Pick<KeptLogs, 'retentionMs' | 'totalBytes'>): string {
  const base = `the logs of ${d.id} (ended ${when(d.ended_at)}) were dropped on worker ${worker} at ${when(d.dropped_at)}`;
  switch (d.reason) {
    case 'expired':
      return `${base}: this worker keeps the logs of ended instances for ${spoken(k.retentionMs)}`;
    case 'total_cap':
      return `${base}: this worker keeps at most ${Math.round(k.totalBytes / 1048576)} MB of logs of ended instances, and newer ones needed the room`;
    case 'missing':
      return `${base}: the file was missing when the NodeEngine started`;
  }
}
