/**
 * Turns TypeBox validation errors into FieldIssues a person can act on: a dotted path
 * (`applications[0].microservices[1].port`, not a JSON pointer), a message naming the field and
 * the value, and a concrete hint. At most one issue per field; a discriminated union (e.g. a
 * constraint) is judged by its `type` first, so a wrong type gives one clear issue.
 */
import { Kind, type TSchema } from '@sinclair/typebox';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';
import type { FieldIssue } from './errors.ts';
import { NAME_PATTERN } from './sla.ts';

export type PathSegment = string | number;

/** `applications`, `[0]`, `microservices`... joined as people write them. */
export function formatPath(base: string, segments: readonly PathSegment[]): string {
  let out = base;
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(s)) out += out === '' ? s : `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

/** Splits a JSON pointer (`/applications/0/port`) into segments; all-digit segments become indices. */
export function pointerSegments(pointer: string): PathSegment[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/** Appends a key or an index to an already formatted path. */
export function childPath(base: string, segment: PathSegment): string {
  return formatPath(base, [segment]);
}

/** At most this many issues (errors or warnings) are collected for one document; the rest are counted. */
export const MAX_ISSUES = 100;

/**
 * A list of issues with an index of their paths, so that "is this field (or one above it)
 * already reported?" costs the length of the path, not the number of issues.
 */
export class IssueList {
  readonly list: FieldIssue[];
  readonly #paths = new Set<string>();
  /** issues not kept because the list was full */
  omitted = 0;
  readonly max: number;

  constructor(list: FieldIssue[] = [], max = MAX_ISSUES) {
    this.list = list;
    this.max = max;
    for (const i of list) this.#paths.add(i.path);
  }

  get full(): boolean {
    return this.list.length >= this.max;
  }

  /** Marks a path as reported without an issue of its own. */
  cover(path: string): void {
    this.#paths.add(path);
  }

  /** True when `path` or a path above it is already reported. */
  covers(path: string): boolean {
    if (this.#paths.size === 0) return false;
    if (this.#paths.has('')) return true;
    for (let i = 1; i <= path.length; i++) {
      const c = path.charAt(i);
      if ((c === '' || c === '.' || c === '[') && this.#paths.has(path.slice(0, i))) return true;
    }
    return false;
  }

  /** Adds an issue unless its field (or one above it) has one already; counts it when full. */
  add(issue: FieldIssue): void {
    if (this.covers(issue.path)) return;
    this.push(issue);
  }

  /** Adds an issue whatever is reported already (warnings); counts it when full. */
  push(issue: FieldIssue): void {
    if (this.full) {
      this.omitted++;
      return;
    }
    this.list.push(issue);
    this.#paths.add(issue.path);
  }

  /** The issues, plus one saying how many were left out. */
  result(what: string): FieldIssue[] {
    if (this.omitted === 0) return this.list;
    return [...this.list, { path: '', message: `${this.omitted} more ${what} left out`, hint: `fix the ${what} above first; at most ${this.max} are listed` }];
  }
}

/** True when `path` is `ancestor` or lies below it. */
export function isAtOrBelow(path: string, ancestor: string): boolean {
  if (ancestor === '') return true;
  if (!path.startsWith(ancestor)) return false;
  const next = path.charAt(ancestor.length);
  return next === '' || next === '.' || next === '[';
}

/** Field facts for messages and hints: what the field holds and an example in JSON. */
interface FieldInfo {
  example: string;
  hint?: string;
}

const NAME_HINT = 'use 1-30 letters or digits, no dots, dashes or spaces';

export const FIELD_INFO: Readonly<Record<string, FieldInfo>> = {
  sla_version: { example: '"v2.0"' },
  customerID: { example: '"Admin"' },
  applications: {
    example: '[{ "application_name": "demo", "application_namespace": "test", "microservices": [] }]',
    hint: 'add at least one application with application_name, application_namespace and microservices',
  },
  application_name: { example: '"clientsrvr"', hint: NAME_HINT },
  application_namespace: { example: '"test"', hint: NAME_HINT },
  application_desc: { example: '"Simple demo"' },
  microservices: { example: '[{ "microservice_name": "server", ... }]' },
  microservice_name: { example: '"server"', hint: NAME_HINT },
  microservice_namespace: { example: '"test"', hint: NAME_HINT },
  virtualization: { example: '"container"' },
  code: { example: '"docker.io/library/nginx:latest"' },
  cmd: { example: '["nginx", "-g", "daemon off;"]' },
  args: { example: '["--verbose"]' },
  added_files: { example: '["https://example.com/config.json"]' },
  environment: { example: '["KEY=value"]' },
  memory: { example: '100' },
  vcpus: { example: '1' },
  vgpus: { example: '0' },
  vtpus: { example: '0' },
  storage: { example: '0' },
  bandwidth_in: { example: '0' },
  bandwidth_out: { example: '0' },
  port: { example: '"8080:80/tcp"' },
  one_shot: { example: 'false' },
  privileged: { example: 'false' },
  addresses: { example: '{ "rr_ip": "10.30.55.55" }' },
  rr_ip: { example: '"10.30.55.55"' },
  rr_ip_v6: { example: '"fdff::55"' },
  constraints: { example: '[{ "type": "direct", "cluster": "c1" }]' },
  connectivity: { example: '[{ "target_microservice_id": "db", "con_constraints": [{ "type": "latency", "threshold": 20 }] }]' },
  target_microservice_id: { example: '"db"' },
  con_constraints: { example: '[{ "type": "latency", "threshold": 20, "rigidness": 1 }]' },
  rigidness: { example: '1', hint: 'use 1 (hard) or a value between 0 and 1 (a preference)' },
  convergence_time: { example: '300' },
  allowed: { example: '["c1", "c2"]', hint: 'list the cluster names (or ids) the service may be placed on' },
  needs: { example: '["image-builder"]', hint: 'addon labels: a letter or digit, then up to 63 letters, digits, ".", "_" or "-"' },
  volumes: { example: '[{ "name": "data", "target": "/data" }]' },
  replicas: { example: '1' },
  health: { example: '{ "type": "tcp", "port": 80 }' },
  labels: { example: '{ "team": "edge" }' },
  cluster: { example: '"c1"' },
  node: { example: '"w1"' },
  location: { example: '"48.1351,11.5820"' },
  threshold: { example: '100' },
  area: { example: '"munich"' },
  interval_s: { example: '5' },
  timeout_s: { example: '2' },
  failure_threshold: { example: '3' },
  restart: { example: '"on-failure"' },
  restart_max: { example: '3' },
  job_name: { example: '"clientsrvr.test.server.test"' },
  instance_number: { example: '0' },
  status: { example: '"RUNNING"' },
  status_detail: { example: '""' },
};

/** A value as it appears in a message: JSON for short scalars, a description otherwise. */
function show(v: unknown): string {
  if (typeof v === 'string' && v.length <= 40) return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return describe(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  switch (typeof v) {
    case 'string':
      return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)}`;
    case 'number':
      return `the number ${v}`;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object':
      return 'an object';
    default:
      return typeof v;
  }
}

const EXPECTED: Partial<Record<ValueErrorType, string>> = {
  [ValueErrorType.String]: 'a string',
  [ValueErrorType.Number]: 'a number',
  [ValueErrorType.Integer]: 'a whole number',
  [ValueErrorType.Boolean]: 'true or false',
  [ValueErrorType.Array]: 'a list',
  [ValueErrorType.Object]: 'an object',
  [ValueErrorType.Null]: 'null',
};

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function literalsOf(schema: TSchema): (string | number | boolean)[] | undefined {
  const anyOf = (schema as { anyOf?: TSchema[] }).anyOf;
  if (!Array.isArray(anyOf)) return undefined;
  const out: (string | number | boolean)[] = [];
  for (const s of anyOf) {
    if (s[Kind] !== 'Literal') return undefined;
    out.push((s as unknown as { const: string | number | boolean }).const);
  }
  return out;
}

/** The variants of a union of objects told apart by a literal `type`, keyed by that literal. */
export function discriminatedVariants(schema: TSchema): Map<string, TSchema> | undefined {
  const anyOf = (schema as { anyOf?: TSchema[] }).anyOf;
  if (!Array.isArray(anyOf) || anyOf.length === 0) return undefined;
  const map = new Map<string, TSchema>();
  for (const s of anyOf) {
    const t = (s as { properties?: Record<string, TSchema> }).properties?.['type'];
    if (s[Kind] !== 'Object' || t === undefined || t[Kind] !== 'Literal') return undefined;
    map.set(String((t as unknown as { const: unknown }).const), s);
  }
  return map;
}

function labelOf(segments: readonly PathSegment[]): string {
  const last = segments[segments.length - 1];
  if (last === undefined) return 'the document';
  if (typeof last === 'string') return last;
  const prev = segments[segments.length - 2];
  return typeof prev === 'string' ? `${prev}[${last}]` : `entry ${last}`;
}

/** One issue for one TypeBox error (or undefined when another issue covers it). */
function issueFor(err: ValueError, base: string, segments: PathSegment[], out: FieldIssue[]): void {
  const path = formatPath(base, segments);
  const label = labelOf(segments);
  const last = segments[segments.length - 1];
  const fieldKey = typeof last === 'string' ? last : undefined;
  const info = fieldKey !== undefined ? FIELD_INFO[fieldKey] : undefined;
  const example = info?.example;
  const v = err.value;
  const push = (message: string, hint: string | undefined): void => {
    out.push(hint === undefined ? { path, message } : { path, message, hint });
  };
  const eg = example !== undefined && fieldKey !== undefined ? `e.g. "${fieldKey}": ${example}` : undefined;

  // A missing field: one "required" issue, whatever TypeBox says about it.
  if (v === undefined && (err.type === ValueErrorType.ObjectRequiredProperty || fieldKey !== undefined)) {
    const allowed = literalsOf(err.schema);
    const hint = allowed
      ? `add "${fieldKey}" with one of: ${allowed.join(', ')}`
      : example !== undefined
        ? `add "${fieldKey}": ${example}`
        : `add the field "${fieldKey ?? label}"`;
    push(`${label} is required`, hint);
    return;
  }

  switch (err.type) {
    case ValueErrorType.Union: {
      const allowed = literalsOf(err.schema);
      if (allowed) {
        push(`${label} ${show(v)} is not one of ${allowed.join(', ')}`, `use one of: ${allowed.join(', ')}`);
        return;
      }
      const variants = discriminatedVariants(err.schema);
      if (variants) {
        discriminatedIssues(variants, v, path, label, out);
        return;
      }
      push(`${label} has none of the accepted forms`, example !== undefined ? `e.g. ${example}` : undefined);
      return;
    }
    case ValueErrorType.String:
    case ValueErrorType.Number:
    case ValueErrorType.Boolean:
    case ValueErrorType.Array:
    case ValueErrorType.Object:
    case ValueErrorType.Null:
    case ValueErrorType.Integer: {
      if (err.type === ValueErrorType.Integer && typeof v === 'number') {
        push(`${label} must be a whole number, got ${v}`, `use a whole number, e.g. ${Math.max(0, Math.round(v))}`);
        return;
      }
      const expected = EXPECTED[err.type] ?? 'another type';
      const message = `${label} must be ${expected}, not ${describe(v)}`;
      let hint = eg;
      if (err.type === ValueErrorType.String && (typeof v === 'number' || typeof v === 'boolean')) {
        hint = fieldKey === 'port'
          ? `write it as a string, e.g. "${String(v)}" or "8080:80/tcp"`
          : `write it as a string in quotes, e.g. "${String(v)}"`;
      } else if ((err.type === ValueErrorType.Number || err.type === ValueErrorType.Integer) && typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v))) {
        hint = `remove the quotes: ${Number(v)}`;
      } else if (err.type === ValueErrorType.Boolean && (v === 'true' || v === 'false')) {
        hint = `remove the quotes: ${v}`;
      } else if (err.type === ValueErrorType.Array && typeof v === 'string') {
        hint = example !== undefined ? `write it as a list, e.g. ${example}` : `write it as a list: [${JSON.stringify(v)}]`;
      }
      push(message, hint ?? `use ${expected}`);
      return;
    }
    case ValueErrorType.StringPattern: {
      const pattern = (err.schema as { pattern?: string }).pattern;
      const s = String(v);
      if (pattern === NAME_PATTERN) {
        if (s.length > 30) push(`${label} ${JSON.stringify(s)} is ${s.length} characters long; at most 30 are allowed`, NAME_HINT);
        else if (s.length === 0) push(`${label} must not be empty`, NAME_HINT);
        else {
          const bad = [...new Set(s.replace(/[a-zA-Z0-9]/g, ''))].map((c) => (c === ' ' ? 'space' : JSON.stringify(c)));
          push(`${label} ${JSON.stringify(s)} contains ${bad.join(', ')}, which ${bad.length === 1 ? 'is' : 'are'} not allowed`, NAME_HINT);
        }
        return;
      }
      // an item of a list (`needs[1]`) takes the hint of its list
      const listKey = typeof last === 'number' ? segments[segments.length - 2] : undefined;
      const listHint = typeof listKey === 'string' ? FIELD_INFO[listKey]?.hint : undefined;
      push(`${label} ${JSON.stringify(s)} does not match ${pattern ?? 'the expected form'}`, info?.hint ?? eg ?? listHint);
      return;
    }
    case ValueErrorType.StringMinLength:
      push(`${label} must not be empty`, info?.hint ?? eg ?? 'give it a value');
      return;
    case ValueErrorType.StringMaxLength: {
      const max = (err.schema as { maxLength?: number }).maxLength;
      push(`${label} is too long (at most ${max} characters)`, 'shorten it');
      return;
    }
    case ValueErrorType.NumberMinimum:
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberExclusiveMinimum:
    case ValueErrorType.IntegerExclusiveMinimum: {
      const min = (err.schema as { minimum?: number; exclusiveMinimum?: number }).minimum ?? (err.schema as { exclusiveMinimum?: number }).exclusiveMinimum;
      const unit = (err.schema as { description?: string }).description;
      push(
        min === 0 ? `${label} must not be negative, got ${String(v)}` : `${label} must be ${min} or more, got ${String(v)}`,
        `use a number ${min === 0 ? '>= 0' : `>= ${min}`}${unit && unit.length < 20 ? ` (${unit})` : ''}${example !== undefined ? `, e.g. ${example}` : ''}`,
      );
      return;
    }
    case ValueErrorType.NumberMaximum:
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberExclusiveMaximum:
    case ValueErrorType.IntegerExclusiveMaximum: {
      const max = (err.schema as { maximum?: number }).maximum ?? (err.schema as { exclusiveMaximum?: number }).exclusiveMaximum;
      push(`${label} must be at most ${max}, got ${String(v)}`, `use a number <= ${max}`);
      return;
    }
    case ValueErrorType.ArrayMinItems: {
      const min = (err.schema as { minItems?: number }).minItems ?? 1;
      push(min === 1 ? `${label} must hold at least one entry` : `${label} must hold at least ${min} entries`, info?.hint ?? eg ?? 'add an entry');
      return;
    }
    case ValueErrorType.ArrayMaxItems: {
      const max = (err.schema as { maxItems?: number }).maxItems ?? 0;
      push(`${label} may hold at most ${max} ${max === 1 ? 'entry' : 'entries'}`, 'remove the extra entries');
      return;
    }
    case ValueErrorType.Literal: {
      const c = (err.schema as unknown as { const: unknown }).const;
      push(`${label} must be ${JSON.stringify(c)}, not ${describe(v)}`, `use ${JSON.stringify(c)}`);
      return;
    }
    case ValueErrorType.ObjectAdditionalProperties:
      push(`${label} is not a known field here`, 'remove it');
      return;
    default:
      push(`${label}: ${err.message}`, eg ?? 'check this field against the reference');
  }
}

/**
 * For a union of objects with a literal `type`: one issue for a missing or unknown type, else
 * the issues of the chosen variant.
 */
function discriminatedIssues(variants: Map<string, TSchema>, v: unknown, path: string, label: string, out: FieldIssue[]): void {
  const allowed = [...variants.keys()];
  if (!isRecord(v)) {
    out.push({ path, message: `${label} must be an object with a "type", not ${describe(v)}`, hint: `e.g. { "type": "${allowed[0] ?? ''}", ... }; type is one of: ${allowed.join(', ')}` });
    return;
  }
  const typePath = childPath(path, 'type');
  const t = v['type'];
  if (t === undefined) {
    out.push({ path: typePath, message: `${label} has no "type"`, hint: `add "type" with one of: ${allowed.join(', ')}` });
    return;
  }
  const variant = typeof t === 'string' ? variants.get(t) : undefined;
  if (variant === undefined) {
    out.push({ path: typePath, message: `${label} type ${show(t)} is unknown`, hint: `use one of: ${allowed.join(', ')}` });
    return;
  }
  schemaIssues(path, Value.Errors(variant, v), out);
}

/**
 * Converts the errors of one value against one schema into FieldIssues, appended to `out`.
 * Errors at or below a path that already has an issue are dropped, so each field gets one issue.
 * Stops reading errors once `out` is full (TypeBox yields them lazily), so the cost is bounded.
 */
export function schemaIssues(base: string, errors: Iterable<ValueError>, out: FieldIssue[] | IssueList = []): FieldIssue[] {
  const list = out instanceof IssueList ? out : new IssueList(out, Number.MAX_SAFE_INTEGER);
  for (const err of errors) {
    if (list.full) {
      list.omitted++;
      break;
    }
    const segments = pointerSegments(err.path);
    const path = formatPath(base, segments);
    if (list.covers(path)) continue;
    const found: FieldIssue[] = [];
    issueFor(err, base, segments, found);
    for (const i of found) list.add(i);
    list.cover(path);
  }
  return list.list;
}

function editDistance(a: string, b: string): number {
  const d: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0] ?? 0;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j] ?? 0;
      d[j] = Math.min((d[j] ?? 0) + 1, (d[j - 1] ?? 0) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length] ?? 0;
}

/** The known key closest to an unknown one, if it looks like a typo. */
export function suggestKey(key: string, known: readonly string[]): string | undefined {
  if (key.length > 64) return undefined; // no field is that long: no typo of one
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = k.toLowerCase() === key.toLowerCase() ? 0 : editDistance(key, k);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 4)) ? best : undefined;
}

/**
 * Warnings for fields the schema does not know (kept for forward compatibility), walking nested
 * objects, arrays and discriminated unions. `skip` names paths not to warn about. The path names
 * the field (long names cut); the message does not repeat it. Stops at MAX_ISSUES warnings when
 * `out` is an IssueList (the rest are counted).
 */
export function unknownFieldWarnings(schema: TSchema, value: unknown, path: string, out: FieldIssue[] | IssueList, skip: ReadonlySet<string> = new Set()): FieldIssue[] {
  const list = out instanceof IssueList ? out : new IssueList(out, Number.MAX_SAFE_INTEGER);
  walkUnknown(schema, value, path, list, skip);
  return list.list;
}

function walkUnknown(schema: TSchema, value: unknown, path: string, out: IssueList, skip: ReadonlySet<string>): void {
  const kind = schema[Kind];
  if (kind === 'Object' && isRecord(value)) {
    const props = (schema as { properties?: Record<string, TSchema> }).properties ?? {};
    // a closed object (additionalProperties: false) has its unknown keys reported as errors
    const closed = (schema as { additionalProperties?: unknown }).additionalProperties === false;
    const known = Object.keys(props);
    for (const [k, v] of Object.entries(value)) {
      const sub = Object.hasOwn(props, k) ? props[k] : undefined;
      if (sub === undefined) {
        if (closed) continue;
        const p = childPath(path, shortKey(k));
        if (skip.has(p)) continue;
        if (out.full) {
          out.omitted++;
          continue;
        }
        const guess = suggestKey(k, known);
        out.push({
          path: p,
          message: 'unknown field, kept but not used',
          hint: guess !== undefined ? `did you mean "${guess}"?` : 'check the spelling; unknown fields are ignored by this version',
        });
      } else {
        walkUnknown(sub, v, childPath(path, k), out, skip);
      }
    }
  } else if (kind === 'Array' && Array.isArray(value)) {
    const items = (schema as { items?: TSchema }).items;
    if (items !== undefined) value.forEach((v, i) => walkUnknown(items, v, childPath(path, i), out, skip));
  } else if (kind === 'Union' && isRecord(value)) {
    const variants = discriminatedVariants(schema);
    const t = value['type'];
    const variant = variants && typeof t === 'string' ? variants.get(t) : undefined;
    if (variant !== undefined) walkUnknown(variant, value, path, out, skip);
  }
}

/** Keys as they appear in paths and messages: long ones cut (a 1 MB key must not be echoed). */
export const SHOWN_KEY_LENGTH = 64;
export function shortKey(k: string): string {
  return k.length > SHOWN_KEY_LENGTH ? `${k.slice(0, SHOWN_KEY_LENGTH)}...` : k;
}
