import { test } from 'node:test';
import assert from 'node:assert/strict';
import { watToWasm } from '@oak/testkit';
import { RuntimeError, capMemory } from '../src/index.ts';

const refused = (reason: string, re?: RegExp) => (e: unknown): boolean => e instanceof RuntimeError && e.reason === reason && (re === undefined || re.test(e.message));

/** the WebAssembly JS API (the project's lib has no DOM types) */
interface Mem {
  buffer: ArrayBuffer;
  grow(pages: number): number;
}
const WA = (globalThis as unknown as { WebAssembly: { Module: new (b: Uint8Array) => object; Instance: new (m: object, imports: object) => { exports: Record<string, unknown> } } }).WebAssembly;

function memoryLimits(bytes: Uint8Array): { min: number; max: number | undefined } {
  const m = new WA.Module(bytes);
  const inst = new WA.Instance(m, {});
  const mem = inst.exports['memory'] as Mem;
  const min = mem.buffer.byteLength / 65536;
  // grow one page at a time until it fails: the maximum
  let max: number | undefined;
  for (let i = 0; i < 4096; i++) {
    try {
      mem.grow(1);
    } catch {
      max = mem.buffer.byteLength / 65536;
      break;
    }
  }
  return { min, max };
}

test('capMemory sets the maximum of a memory without one, and lowers a larger one', async () => {
  const none = await watToWasm('(module (memory (export "memory") 2))');
  const c = capMemory(none, 32);
  assert.equal(c.minPages, 2);
  assert.equal(c.maxPages, 32);
  assert.deepEqual(memoryLimits(c.bytes), { min: 2, max: 32 });
  const larger = await watToWasm('(module (memory (export "memory") 1 1000) (func (export "f")))');
  assert.deepEqual(memoryLimits(capMemory(larger, 16).bytes), { min: 1, max: 16 });
  const smaller = await watToWasm('(module (memory (export "memory") 1 8))');
  assert.equal(capMemory(smaller, 16).maxPages, 8, 'a smaller maximum is kept');
  assert.equal(capMemory(none, 0).bytes, none, 'no cap: unchanged');
});

test('capMemory: a module without memory passes, one starting over the cap is refused', async () => {
  assert.equal(capMemory(await watToWasm('(module (func (export "_start")))'), 16).minPages, 0);
  const big = await watToWasm('(module (memory 1024))');
  assert.throws(() => capMemory(big, 16), refused('memory_too_small', /64 MB.*1 MB/));
});

test('capMemory refuses hostile and unsupported binaries with a clear reason', async () => {
  const cases: Array<[Uint8Array, RegExp]> = [
    [new Uint8Array(), /magic/],
    [Buffer.from('#!/bin/sh\necho hi\n'), /magic/],
    [Uint8Array.from([0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0]), /component|version/],
    [Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff]), /LEB128/],
    [Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 0x7f]), /past the end/],
    [Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0x04, 1]), /64-bit/],
    [Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 5, 2, 0, 1, 0, 1]), /2 memories/],
    [Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 4, 1, 0, 1, 9]), /trailing/],
    [await watToWasm('(module (import "env" "memory" (memory 1)))'), /imports its memory/],
    [await watToWasm('(module (import "env" "t" (table 1 funcref)) (import "env" "g" (global i32)) (import "env" "memory" (memory 1 2)))'), /imports its memory/],
  ];
  for (const [bytes, re] of cases) assert.throws(() => capMemory(bytes, 16), refused('invalid_code', re), re.source);
});

test('capMemory never crashes on random bytes behind a valid header', () => {
  let seed = 12345;
  const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
  for (let i = 0; i < 2000; i++) {
    const body = Array.from({ length: 1 + (i % 40) }, rnd);
    const bytes = Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...body]);
    try {
      capMemory(bytes, 16);
    } catch (e) {
      assert.ok(e instanceof RuntimeError, `only RuntimeError: ${String(e)}`);
    }
  }
});
