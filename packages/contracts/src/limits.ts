/**
 * Input limits: how large, wide and deep a JSON document may be before anything reads it.
 * One iterative walk (no recursion, so no stack overflow at any depth), linear in the document,
 * stops at the first value over a limit and names the limit and the path. Checked before any
 * code that recurses (schema checks, warnings, JSON.stringify, the store).
 */
import { OakError, type FieldIssue } from './errors.ts';
import { formatPath, shortKey, type PathSegment } from './issues.ts';

export interface JsonLimits {
  /** deepest nesting of arrays/objects; the document itself is level 0 */
  depth: number;
  /** entries of any array */
  arrayItems: number;
  /** keys of any object */
  objectKeys: number;
  /** characters of any string value */
  stringLength: number;
  /** characters of any object key */
  keyLength: number;
  /** tighter entry counts for arrays (or objects) held under these keys */
  named?: Readonly<Record<string, number>>;
  /** entries of a `port` string (`;`-separated) */
  portEntries?: number;
}

/** Limits for any JSON body or message (the outer guard; the SLA has tighter ones). */
export const JSON_LIMITS: JsonLimits = {
  depth: 32,
  arrayItems: 10_000,
  objectKeys: 1_000,
  stringLength: 65_536,
  keyLength: 256,
};

/**
 * SLA limits (docs/sla.md): far above any real deployment, low enough that validating the largest
 * document allowed costs milliseconds.
 */
export const SLA_LIMITS = {
  applications: 100,
  microservices: 200,
  constraints: 100,
  environment: 1_000,
  cmd: 1_000,
  args: 1_000,
  addedFiles: 32,
  connectivity: 100,
  volumes: 100,
  labels: 100,
  portEntries: 256,
  depth: JSON_LIMITS.depth,
  stringLength: JSON_LIMITS.stringLength,
  keyLength: JSON_LIMITS.keyLength,
  arrayItems: JSON_LIMITS.arrayItems,
  objectKeys: JSON_LIMITS.objectKeys,
} as const;

export const SLA_JSON_LIMITS: JsonLimits = {
  depth: SLA_LIMITS.depth,
  arrayItems: SLA_LIMITS.arrayItems,
  objectKeys: SLA_LIMITS.objectKeys,
  stringLength: SLA_LIMITS.stringLength,
  keyLength: SLA_LIMITS.keyLength,
  portEntries: SLA_LIMITS.portEntries,
  named: {
    applications: SLA_LIMITS.applications,
    microservices: SLA_LIMITS.microservices,
    constraints: SLA_LIMITS.constraints,
    environment: SLA_LIMITS.environment,
    cmd: SLA_LIMITS.cmd,
    args: SLA_LIMITS.args,
    added_files: SLA_LIMITS.addedFiles,
    connectivity: SLA_LIMITS.connectivity,
    volumes: SLA_LIMITS.volumes,
    labels: SLA_LIMITS.labels,
  },
};

/** One value over a limit. */
export interface LimitViolation {
  /** the limit's name as documented, e.g. `max_depth`, `max_applications` */
  limit: string;
  max: number;
  path: string;
  message: string;
  hint: string;
}

/** 422 OAK_LIMIT_EXCEEDED: the input is larger, wider or deeper than a documented limit. */
export class LimitExceededError extends OakError {
  readonly limit: string;
  readonly max: number;
  constructor(v: LimitViolation) {
    const issue: FieldIssue = { path: v.path, message: v.message, hint: v.hint };
    super('OAK_LIMIT_EXCEEDED', v.path === '' ? v.message : `${v.path}: ${v.message}`, { path: v.path, hint: v.hint, details: [issue] });
    this.limit = v.limit;
    this.max = v.max;
  }
}

interface Frame {
  v: unknown;
  depth: number;
  parent: Frame | undefined;
  seg: PathSegment | undefined;
}

function pathOf(f: Frame, base: string, extra?: PathSegment): string {
  const segs: PathSegment[] = extra === undefined ? [] : [extra];
  for (let x: Frame | undefined = f; x !== undefined && x.seg !== undefined; x = x.parent) segs.push(x.seg);
  segs.reverse();
  return formatPath(base, segs.map((s) => (typeof s === 'string' ? shortKey(s) : s)));
}

function limitName(key: string): string {
  return `max_${key}`;
}

/**
 * The first value of `value` over one of `limits` (depth first, document order), or undefined.
 * Costs one visit per value; never recurses.
 */
export function findLimitViolation(value: unknown, limits: JsonLimits, base = ''): LimitViolation | undefined {
  const stack: Frame[] = [{ v: value, depth: 0, parent: undefined, seg: undefined }];
  while (stack.length > 0) {
    const f = stack.pop() as Frame;
    const v = f.v;
    if (typeof v === 'string') {
      if (v.length > limits.stringLength) {
        return { limit: 'max_string_length', max: limits.stringLength, path: pathOf(f, base), message: `the string is ${v.length} characters long; at most ${limits.stringLength} are allowed (limit max_string_length)`, hint: 'shorten it' };
      }
      if (f.seg === 'port' && limits.portEntries !== undefined) {
        let n = 1;
        for (let i = v.indexOf(';'); i !== -1; i = v.indexOf(';', i + 1)) n++;
        if (n > limits.portEntries) {
          return { limit: 'max_port_entries', max: limits.portEntries, path: pathOf(f, base), message: `the port list has ${n} entries; at most ${limits.portEntries} are allowed (limit max_port_entries)`, hint: 'map fewer ports' };
        }
      }
      continue;
    }
    if (typeof v !== 'object' || v === null) continue;
    if (f.depth >= limits.depth) {
      return {
        limit: 'max_depth',
        max: limits.depth,
        path: pathOf(f, base),
        message: `the value is nested more than ${limits.depth} levels deep (limit max_depth)`,
        hint: `flatten it: documents may nest at most ${limits.depth} levels of objects and lists`,
      };
    }
    const named = typeof f.seg === 'string' ? limits.named?.[f.seg] : undefined;
    if (Array.isArray(v)) {
      const max = named ?? limits.arrayItems;
      if (v.length > max) {
        const limit = named !== undefined ? limitName(String(f.seg)) : 'max_array_items';
        return { limit, max, path: pathOf(f, base), message: `the list has ${v.length} entries; at most ${max} are allowed (limit ${limit})`, hint: 'send fewer entries' };
      }
      for (let i = v.length - 1; i >= 0; i--) stack.push({ v: v[i], depth: f.depth + 1, parent: f, seg: i });
      continue;
    }
    const keys = Object.keys(v);
    const max = named ?? limits.objectKeys;
    if (keys.length > max) {
      const limit = named !== undefined ? limitName(String(f.seg)) : 'max_object_keys';
      return { limit, max, path: pathOf(f, base), message: `the object has ${keys.length} fields; at most ${max} are allowed (limit ${limit})`, hint: 'send fewer fields' };
    }
    for (const k of keys) {
      if (k.length > limits.keyLength) {
        return { limit: 'max_key_length', max: limits.keyLength, path: pathOf(f, base, k), message: `a field name is ${k.length} characters long; at most ${limits.keyLength} are allowed (limit max_key_length)`, hint: 'use a shorter field name' };
      }
    }
    for (let i = keys.length - 1; i >= 0; i--) {
      const k = keys[i] as string;
      stack.push({ v: (v as Record<string, unknown>)[k], depth: f.depth + 1, parent: f, seg: k });
    }
  }
  return undefined;
}

/** Throws LimitExceededError (422 OAK_LIMIT_EXCEEDED) for the first value over a limit. */
export function assertWithinLimits(value: unknown, limits: JsonLimits = JSON_LIMITS, base = ''): void {
  const v = findLimitViolation(value, limits, base);
  if (v !== undefined) throw new LimitExceededError(v);
}

/**
 * Timeouts of the HTTP servers (root API, cluster registration): a request whose headers or body
 * do not arrive in time is answered 408 and its connection closed. Long answers (event streams,
 * log follows) are not affected: the clock stops once the request is in.
 */
export const HTTP_TIMEOUTS = {
  /** the whole request (headers and body) must arrive within this time */
  requestTimeoutMs: 30_000,
  /** the headers must arrive within this time */
  headersTimeoutMs: 10_000,
} as const;

/**
 * The fastify options that apply HTTP_TIMEOUTS (`requestTimeoutMs` overrides the request timeout;
 * the headers timeout is never longer). Node checks the timeouts every `connectionsCheckingInterval`.
 */
export function httpServerTimeouts(requestTimeoutMs: number = HTTP_TIMEOUTS.requestTimeoutMs): {
  requestTimeout: number;
  http: { requestTimeout: number; headersTimeout: number; connectionsCheckingInterval: number };
} {
  const headersTimeout = Math.min(HTTP_TIMEOUTS.headersTimeoutMs, requestTimeoutMs);
  return {
    requestTimeout: requestTimeoutMs,
    http: { requestTimeout: requestTimeoutMs, headersTimeout, connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(headersTimeout / 4))) },
  };
}

/**
 * Log relay caps, applied at the cluster (worker batches) and again at the root (cluster
 * messages): what is over a cap is dropped with a note line, never spread into a call.
 */
export const LOG_LIMITS = {
  /** lines of one batch (worker -> cluster, cluster -> root) */
  batchLines: 1_000,
  /** bytes of the lines of one batch */
  batchBytes: 1024 * 1024,
  /** characters of one line; longer ones are cut */
  lineLength: 16 * 1024,
  /** lines the root buffers for one reader that reads slower than the instance writes */
  bufferLines: 10_000,
  /** bytes the root buffers for one reader */
  bufferBytes: 8 * 1024 * 1024,
} as const;

const NOTE_ROOM = 256;

/** The in-band note that says lines were dropped (log streams are text: notes start with `# oak:`). */
export function droppedNote(count: number, why: string): string {
  return `# oak: ${count} log line${count === 1 ? '' : 's'} dropped (${why})`;
}

/**
 * At most LOG_LIMITS.batchLines lines of at most LOG_LIMITS.batchBytes in all, each cut at
 * LOG_LIMITS.lineLength; non-strings are skipped. What is left out is counted in a last note line.
 * Linear, no spread: safe for a batch of any length.
 */
export function capLogBatch(lines: readonly unknown[], limits: { batchLines: number; batchBytes: number; lineLength: number } = LOG_LIMITS): { lines: string[]; dropped: number } {
  const out: string[] = [];
  let bytes = 0;
  let dropped = 0;
  // the note counts as a line and its bytes are kept free: a capped batch passes the same cap again
  const room = limits.batchBytes - NOTE_ROOM;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i];
    if (typeof raw !== 'string') {
      dropped++;
      continue;
    }
    const line = raw.length > limits.lineLength ? `${raw.slice(0, limits.lineLength)}... (cut at ${limits.lineLength} characters)` : raw;
    if (out.length >= limits.batchLines || bytes + line.length > room) {
      dropped += lines.length - i;
      break;
    }
    out.push(line);
    bytes += line.length;
  }
  if (dropped > 0 && out.length >= limits.batchLines) {
    out.pop();
    dropped++;
  }
  if (dropped > 0) out.push(droppedNote(dropped, `a batch holds at most ${limits.batchLines} lines and ${limits.batchBytes} bytes`));
  return { lines: out, dropped };
}

/** A worker registration (POST /api/node/register): a few short fields. */
export const REGISTRATION_LIMITS: JsonLimits = { depth: 8, arrayItems: 64, objectKeys: 64, stringLength: 1024, keyLength: 64 };
