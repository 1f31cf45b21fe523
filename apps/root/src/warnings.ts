/**
 * Warnings about an accepted document (unknown SLA fields kept, an SLA version read as v2.0).
 * They go in the `oak-warnings` header as a JSON list of "path: message" strings, capped at
 * WARNINGS_HEADER_MAX bytes (clients refuse huge headers) with a last entry counting what was
 * left out, and in full (at most MAX_ISSUES of them, already bounded by the validator) in the
 * answer's `warnings` field.
 */
import type { FieldIssue } from '@oak/contracts';
import type { FastifyReply } from 'fastify';

export const WARNINGS_HEADER = 'oak-warnings';
/** The largest `oak-warnings` header value, in bytes. */
export const WARNINGS_HEADER_MAX = 4096;
/** A warning's text in the header is cut to this many characters. */
const ENTRY_MAX = 300;

function entry(w: FieldIssue): string {
  // header values must be latin-1 without control characters
  const text = `${w.path}: ${w.message}`.replace(/[^\x20-\x7e]/g, '?');
  return text.length > ENTRY_MAX ? `${text.slice(0, ENTRY_MAX)}...` : text;
}

/** The header value for these warnings (undefined for none), at most WARNINGS_HEADER_MAX bytes. */
export function warningsHeader(warnings: readonly FieldIssue[]): string | undefined {
  if (warnings.length === 0) return undefined;
  const kept: string[] = [];
  let size = 2; // []
  const reserve = 80; // room for the note about what was left out
  for (const w of warnings) {
    const e = JSON.stringify(entry(w));
    if (size + e.length + 1 > WARNINGS_HEADER_MAX - reserve) break;
    kept.push(e);
    size += e.length + 1;
  }
  const left = warnings.length - kept.length;
  if (left > 0) kept.push(JSON.stringify(`${left} more warning${left === 1 ? '' : 's'} left out (the answer's "warnings" lists them)`));
  return `[${kept.join(',')}]`;
}

export function sendWarnings(reply: FastifyReply, warnings: readonly FieldIssue[]): void {
  const h = warningsHeader(warnings);
  if (h !== undefined) void reply.header(WARNINGS_HEADER, h);
}

/** The warnings whose path lies under `prefix` (all when prefix is ''); undefined for none. */
export function warningsUnder(warnings: readonly FieldIssue[], prefix: string, includeTop = false): FieldIssue[] | undefined {
  const out = warnings.filter((w) => (prefix === '' ? true : w.path === prefix || w.path.startsWith(`${prefix}.`) || w.path.startsWith(`${prefix}[`) || (includeTop && !w.path.startsWith('applications['))));
  return out.length > 0 ? out : undefined;
}

/** the value at a validator path such as `applications[0].microservices[1].addresses.rr_ip` in `doc` */
function valueAt(doc: unknown, path: string): unknown {
  let cur: unknown = doc;
  for (const part of path.match(/[^.[\]]+/g) ?? []) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = /^\d+$/.test(part) && Array.isArray(cur) ? cur[Number(part)] : (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/**
 * The warnings without those about an `addresses.rr_ip` that this root honours after all: the
 * validator (which knows only 10.30.0.0/16) warns about every rr_ip outside it, but an address
 * inside the operator's extra service ranges (`honoured(ip)`) is given exactly as asked.
 */
export function withoutHonouredAddresses(warnings: FieldIssue[], doc: unknown, honoured: (ip: string) => boolean): FieldIssue[] {
  return warnings.filter((w) => {
    if (!/(^|\.)addresses\.rr_ip$/.test(w.path)) return true;
    const v = valueAt(doc, w.path);
    return !(typeof v === 'string' && honoured(v));
  });
}
