/**
 * The few facts of a WebAssembly binary the wasm driver needs before it runs one, and the one edit
 * it makes: the module's own memory gets a maximum of the SLA's memory (`memory.grow` past it
 * returns -1 inside the module, so a wasm instance cannot take more than it was given, whatever
 * its declared maximum). Pure functions over bytes; hostile input gets a RuntimeError, never a
 * crash or a loop.
 */
import { RuntimeError } from '../types.ts';

/** 64 KiB pages per MB */
export const PAGES_PER_MB = 16;

const MAGIC = [0x00, 0x61, 0x73, 0x6d];
const VERSION_1 = [0x01, 0x00, 0x00, 0x00];

interface Leb {
  value: number;
  next: number;
}

function readU32(b: Uint8Array, at: number): Leb {
  let value = 0;
  let shift = 0;
  for (let i = at; i < b.length && i < at + 5; i++) {
    const byte = b[i] as number;
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if ((byte & 0x80) === 0) {
      if (value > 0xffffffff) break;
      return { value, next: i + 1 };
    }
  }
  throw new RuntimeError('invalid_code', `not a valid WebAssembly module: bad LEB128 number at byte ${at}`);
}

export function writeU32(n: number): number[] {
  const out: number[] = [];
  let v = n >>> 0;
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

interface Section {
  id: number;
  /** where the section's id byte is */
  start: number;
  /** where its content begins and ends */
  body: number;
  end: number;
}

function sections(b: Uint8Array): Section[] {
  if (b.length < 8 || MAGIC.some((x, i) => b[i] !== x)) throw new RuntimeError('invalid_code', 'not a WebAssembly module (no \\0asm magic number)');
  if (VERSION_1.some((x, i) => b[4 + i] !== x)) throw new RuntimeError('invalid_code', 'not a WebAssembly 1.0 module (a component or an unknown version); WASI preview 1 needs a core module');
  const out: Section[] = [];
  let at = 8;
  while (at < b.length) {
    const id = b[at] as number;
    const size = readU32(b, at + 1);
    const end = size.next + size.value;
    if (end > b.length) throw new RuntimeError('invalid_code', `not a valid WebAssembly module: section ${id} runs past the end`);
    out.push({ id, start: at, body: size.next, end });
    at = end;
  }
  return out;
}

function imports(b: Uint8Array, s: Section): { module: string; name: string; kind: number }[] {
  const dec = new TextDecoder('utf-8', { fatal: true });
  const n = readU32(b, s.body);
  let at = n.next;
  const out: { module: string; name: string; kind: number }[] = [];
  const str = (): string => {
    const len = readU32(b, at);
    if (len.next + len.value > s.end) throw new RuntimeError('invalid_code', 'not a valid WebAssembly module: an import name runs past its section');
    at = len.next + len.value;
    try {
      return dec.decode(b.subarray(len.next, at));
    } catch {
      throw new RuntimeError('invalid_code', 'not a valid WebAssembly module: an import name is not UTF-8');
    }
  };
  for (let i = 0; i < n.value; i++) {
    const module = str();
    const name = str();
    const kind = b[at] as number;
    at++;
    out.push({ module, name, kind });
    if (kind === 0) at = readU32(b, at).next; // a function's type index
    else if (kind === 3) at += 2; // a global: value type, mutability
    else if (kind === 1 || kind === 2) {
      if (kind === 1) at++; // a table's element type
      const flags = b[at] as number;
      at = readU32(b, at + 1).next; // min
      if ((flags & 1) !== 0) at = readU32(b, at).next; // max
    } else throw new RuntimeError('invalid_code', `not a valid WebAssembly module: import kind ${kind}`);
    if (at > s.end) throw new RuntimeError('invalid_code', 'not a valid WebAssembly module: the import section runs past its end');
  }
  return out;
}

export interface CappedModule {
  bytes: Uint8Array;
  /** the module's initial memory, in pages (0: it defines none) */
  minPages: number;
  /** the maximum it now has, in pages (undefined: no cap asked for) */
  maxPages: number | undefined;
}

/**
 * Gives the module's memory a maximum of `capPages` (0: leaves it as it is). Refuses what the
 * driver cannot run: not a core module, a module that imports its memory (the WASI runner
 * provides none), a 64-bit memory, or one whose initial size is already over the cap.
 */
export function capMemory(bytes: Uint8Array, capPages: number): CappedModule {
  const secs = sections(bytes);
  const imp = secs.find((s) => s.id === 2);
  if (imp !== undefined && imports(bytes, imp).some((i) => i.kind === 2)) {
    throw new RuntimeError('invalid_code', 'the module imports its memory; a WASI preview 1 module must define and export its own');
  }
  const mem = secs.find((s) => s.id === 5);
  if (mem === undefined) return { bytes, minPages: 0, maxPages: capPages > 0 ? capPages : undefined };
  const count = readU32(bytes, mem.body);
  if (count.value !== 1) throw new RuntimeError('invalid_code', `the module defines ${count.value} memories; the wasm driver runs modules with one`);
  const flags = bytes[count.next] as number;
  if (flags > 0x03) throw new RuntimeError('invalid_code', `the module's memory has flags 0x${flags.toString(16)} (64-bit or unknown); the wasm driver runs 32-bit memories`);
  const min = readU32(bytes, count.next + 1);
  let max: number | undefined;
  let after = min.next;
  if ((flags & 1) !== 0) {
    const m = readU32(bytes, min.next);
    max = m.value;
    after = m.next;
  }
  if (after !== mem.end) throw new RuntimeError('invalid_code', 'not a valid WebAssembly module: the memory section has trailing bytes');
  if (capPages <= 0) return { bytes, minPages: min.value, maxPages: undefined };
  if (min.value > capPages) {
    throw new RuntimeError('memory_too_small', `the module starts with ${min.value / PAGES_PER_MB} MB of memory, more than its memory ${capPages / PAGES_PER_MB} MB`);
  }
  const newMax = max === undefined ? capPages : Math.min(max, capPages);
  const body = [...writeU32(1), flags | 1, ...writeU32(min.value), ...writeU32(newMax)];
  const section = [5, ...writeU32(body.length), ...body];
  const out = new Uint8Array(bytes.length - (mem.end - mem.start) + section.length);
  out.set(bytes.subarray(0, mem.start), 0);
  out.set(section, mem.start);
  out.set(bytes.subarray(mem.end), mem.start + section.length);
  return { bytes: out, minPages: min.value, maxPages: newMax };
}
