/**
 * Hostile inputs for the property-based fuzz suites (fast-check). A fixed seed by default, so
 * that a run is repeatable; OAK_FUZZ_SEED picks another, OAK_FUZZ_SCALE multiplies the run counts
 * (e.g. OAK_FUZZ_SCALE=10 for a long run before a release).
 */
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';

export const FUZZ_SEED = Number(process.env.OAK_FUZZ_SEED ?? 20261201);
export const FUZZ_SCALE = Math.max(0.01, Number(process.env.OAK_FUZZ_SCALE ?? 1));

/** fast-check parameters for a suite: the seed and `base` runs times OAK_FUZZ_SCALE. */
export function fuzzParams(base: number): { seed: number; numRuns: number; endOnFailure: true } {
  return { seed: FUZZ_SEED, numRuns: Math.max(1, Math.round(base * FUZZ_SCALE)), endOnFailure: true };
}

/** JSON text nested `levels` deep (built as text: JSON.stringify itself overflows on such values). */
export function deepJsonText(levels: number, leaf = '1'): string {
  return '['.repeat(levels) + leaf + ']'.repeat(levels);
}

const SPECIAL_STRINGS = [
  '',
  ' ',
  ' 1',
  '0x0',
  '1e9',
  '-1',
  '1.5',
  '00',
  'NaN',
  'Infinity',
  'null',
  'true',
  '../../etc/passwd',
  '%00',
  '\u0000',
  '\r\nX-Injected: 1',
  'a/b/c',
  '+',
  '#',
  '$',
  '__proto__',
  'constructor',
  'prototype',
  '{"$gt":""}',
  "' OR 1=1 --",
  '<script>alert(1)</script>',
  '\u202e\u0301\ud83d\ude00',
  '\ud800',
  'é'.repeat(40),
];

/** Strings people and attackers send: empty, numeric-looking, path tricks, control characters, long ones. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 3, arbitrary: fc.constantFrom(...SPECIAL_STRINGS) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 70_000 }).map((n) => 'x'.repeat(n)) },
);

export const hostileNumber: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(-1, -0, 0, 0.5, 1.5, 1e308, -1e308, 2 ** 53 + 2, 1e-320, 65536, 4294967296),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
);

/** Any JSON value of modest size, with hostile leaves. */
export const hostileValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    hostileString,
    hostileNumber,
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(fc.oneof(hostileString.filter((s) => s.length < 100), fc.constantFrom('__proto__', 'constructor', 'type', 'lines', 'status')), tie('value'), { maxKeys: 5 }),
  ),
})).value;

/** Raw payload text: JSON of hostile values, deep nesting, broken JSON, very wide arrays. */
export const hostileText: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: hostileValue.map((v) => JSON.stringify(v) ?? 'null') },
  { weight: 1, arbitrary: fc.constantFrom(33, 1_000, 20_000).map((n) => deepJsonText(n)) },
  { weight: 1, arbitrary: fc.constantFrom('{', '[1,', '{"a":}', 'nul', '"\\ud800"', '{"a":1}{"b":2}', '\u0000', '', ' ', '[]', '{}', '"x"', '1e999') },
  { weight: 1, arbitrary: fc.constantFrom(20_000, 200_000).map((n) => `[${'0,'.repeat(n)}0]`) },
);

/** Raw payload bytes: hostile text, or bytes that are not UTF-8. */
export const hostileBytes: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 5, arbitrary: hostileText.map((t) => Buffer.from(t, 'utf8')) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: fc.constant(Buffer.from([0xff, 0xfe, 0x7b, 0x7d])) },
);

/**
 * A valid message with one required field broken (removed, or replaced by a value of the wrong
 * kind): the result must be refused. `fields` maps each required field to the kind it must be.
 */
export function brokenMessage(valid: Record<string, unknown>, fields: Record<string, 'string' | 'number' | 'integer' | 'boolean' | 'array' | 'object' | 'nonneg'>): fc.Arbitrary<Record<string, unknown>> {
  const names = Object.keys(fields);
  const wrong = (kind: string): fc.Arbitrary<unknown> => {
    const notString = fc.oneof(hostileNumber, fc.boolean(), fc.constant(null), fc.array(hostileString, { maxLength: 3 }), fc.constant({}));
    switch (kind) {
      case 'string':
        return notString;
      case 'number':
      case 'integer':
        return fc.oneof(hostileString, fc.boolean(), fc.constant(null), fc.constant([1]), fc.constant({ n: 1 }), ...(kind === 'integer' ? [fc.constantFrom(0.5, 1.5, -0.25)] : []));
      case 'nonneg':
        return fc.oneof(fc.constantFrom(-1, -1e308, -0.001), hostileString, fc.constant(null));
      case 'boolean':
        return fc.oneof(hostileString, hostileNumber, fc.constant(null));
      case 'array':
        return fc.oneof(hostileString, hostileNumber, fc.constant({}), fc.constant(null));
      default:
        return fc.oneof(hostileString, hostileNumber, fc.constant([]), fc.constant(null));
    }
  };
  return fc
    .constantFrom(...names)
    .chain((name) => fc.tuple(fc.constant(name), fc.oneof(fc.constant(undefined), wrong(fields[name] ?? 'object')), fc.dictionary(hostileString.filter((s) => s.length < 50), hostileValue, { maxKeys: 3 })))
    .map(([name, value, extra]) => {
      const out: Record<string, unknown> = { ...extra, ...valid };
      if (value === undefined) delete out[name];
      else out[name] = value;
      return out;
    });
}

let collect: (() => void) | undefined;
function gc(): void {
  if (collect === undefined) {
    // the test runner's command line is fixed: switch the collector on from inside
    v8.setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  }
  collect();
}

/** Heap (after a full collection: what is still held) and RSS now, in bytes. */
export function memory(): { heap: number; rss: number } {
  gc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}
