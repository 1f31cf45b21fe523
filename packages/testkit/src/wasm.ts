/**
 * WASI preview 1 test modules, assembled from WAT with wabt (no toolchain, no internet): a module
 * that prints its arguments and environment, exits with a code, sleeps forever (a service), grows
 * its memory without end, tries to open paths outside its preopen, or creates a file inside it.
 */
import wabtInit from 'wabt';

export interface WasiModuleOptions {
  /** a line printed first */
  text?: string;
  /** prints argv[1..] joined by spaces, then this suffix and a newline (e.g. `<marker> up`) */
  argsLine?: string;
  /** prints each environment variable on its own line */
  env?: boolean;
  /** tries to open each path (relative to the preopen fd 3) for reading: prints `denied <path>`, or the file's first KiB and exits 1 */
  open?: string[];
  /** creates this file in the preopen and writes `text` into it, then prints `created <path>` */
  create?: { path: string; text: string };
  /** sleeps this many seconds before `then` */
  sleepFirst?: number;
  /** what it does at the end (default: returns from _start, exit 0) */
  then?: { exit: number } | 'sleep' | 'hog' | 'trap' | 'return';
}

const enc = new TextEncoder();

/** a WAT string literal of arbitrary bytes */
function watBytes(b: Uint8Array): string {
  return `"${[...b].map((x) => `\\${x.toString(16).padStart(2, '0')}`).join('')}"`;
}

/** The WAT text of a module (exported for tests that want to see it). */
export function wasiModuleWat(o: WasiModuleOptions): string {
  const data: string[] = [];
  let next = 1024;
  const str = (s: string): { ptr: number; len: number } => {
    const b = enc.encode(s);
    const ptr = next;
    data.push(`(data (i32.const ${ptr}) ${watBytes(b)})`);
    next += b.length + 1;
    if (next > 8000) throw new Error('wasiModuleWat: strings too long');
    return { ptr, len: b.length };
  };
  const body: string[] = [];
  const print = (s: string): void => {
    const p = str(s);
    body.push(`(call $write (i32.const ${p.ptr}) (i32.const ${p.len}))`);
  };
  if (o.text !== undefined) print(`${o.text}\n`);
  if (o.argsLine !== undefined) {
    const suffix = str(`${o.argsLine}\n`);
    body.push(`(call $args_line (i32.const ${suffix.ptr}) (i32.const ${suffix.len}))`);
  }
  if (o.env === true) body.push('(call $env_lines)');
  for (const path of o.open ?? []) {
    const p = str(path);
    const denied = str(`denied ${path}\n`);
    body.push(`(call $try_open (i32.const ${p.ptr}) (i32.const ${p.len}) (i32.const ${denied.ptr}) (i32.const ${denied.len}))`);
  }
  if (o.create !== undefined) {
    const p = str(o.create.path);
    const t = str(o.create.text);
    const done = str(`created ${o.create.path}\n`);
    body.push(`(call $create (i32.const ${p.ptr}) (i32.const ${p.len}) (i32.const ${t.ptr}) (i32.const ${t.len}))`);
    body.push(`(call $write (i32.const ${done.ptr}) (i32.const ${done.len}))`);
  }
  if (o.sleepFirst !== undefined && o.sleepFirst > 0) {
    body.push(`(local.set $i (i32.const ${Math.floor(o.sleepFirst)}))`);
    body.push('(block $slept (loop $more (br_if $slept (i32.eqz (local.get $i))) (call $sleep_1s) (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br $more)))');
  }
  const then = o.then ?? 'return';
  if (then === 'sleep') body.push('(loop $forever (call $sleep_1s) (br $forever))');
  else if (then === 'hog') body.push('(call $hog)');
  else if (then === 'trap') body.push('unreachable');
  else if (then !== 'return') body.push(`(call $proc_exit (i32.const ${then.exit}))`);
  return `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ${data.join('\n  ')}
  ;; 0: iovec, 8: nwritten, 16/20: counts, 24: opened fd, 30: newline, 31: space, 2048: subscription, 2112: event, 2144: nevents
  ;; 4096: read buffer, 0x10000: pointers, 0x11000: strings
  (func $write (param $p i32) (param $n i32)
    (i32.store (i32.const 0) (local.get $p))
    (i32.store (i32.const 4) (local.get $n))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func $strlen (param $p i32) (result i32) (local $n i32)
    (block $done (loop $l
      (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $l)))
    (local.get $n))
  (func $args_line (param $sp i32) (param $sn i32) (local $i i32) (local $p i32)
    (i32.store8 (i32.const 31) (i32.const 32))
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $args_get (i32.const 0x10000) (i32.const 0x11000)))
    (local.set $i (i32.const 1))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.load (i32.const 16))))
      (local.set $p (i32.load (i32.add (i32.const 0x10000) (i32.mul (local.get $i) (i32.const 4)))))
      (if (i32.gt_u (local.get $i) (i32.const 1)) (then (call $write (i32.const 31) (i32.const 1))))
      (call $write (local.get $p) (call $strlen (local.get $p)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (call $write (local.get $sp) (local.get $sn)))
  (func $env_lines (local $i i32) (local $p i32)
    (i32.store8 (i32.const 30) (i32.const 10))
    (drop (call $environ_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $environ_get (i32.const 0x10000) (i32.const 0x11000)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (i32.load (i32.const 16))))
      (local.set $p (i32.load (i32.add (i32.const 0x10000) (i32.mul (local.get $i) (i32.const 4)))))
      (call $write (local.get $p) (call $strlen (local.get $p)))
      (call $write (i32.const 30) (i32.const 1))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))
  (func $try_open (param $p i32) (param $n i32) (param $dp i32) (param $dn i32)
    ;; rights: fd_read (bit 1)
    (if (i32.ne (call $path_open (i32.const 3) (i32.const 1) (local.get $p) (local.get $n) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 24)) (i32.const 0))
      (then (call $write (local.get $dp) (local.get $dn)) (return)))
    (i32.store (i32.const 0) (i32.const 4096))
    (i32.store (i32.const 4) (i32.const 1024))
    (drop (call $fd_read (i32.load (i32.const 24)) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $write (i32.const 4096) (i32.load (i32.const 8)))
    (call $proc_exit (i32.const 1)))
  (func $create (param $p i32) (param $n i32) (param $tp i32) (param $tn i32)
    ;; oflags: creat | trunc; rights: fd_write (bit 6)
    (if (i32.ne (call $path_open (i32.const 3) (i32.const 1) (local.get $p) (local.get $n) (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 24)) (i32.const 0))
      (then (call $proc_exit (i32.const 3))))
    (i32.store (i32.const 0) (local.get $tp))
    (i32.store (i32.const 4) (local.get $tn))
    (drop (call $fd_write (i32.load (i32.const 24)) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func $sleep_1s
    (i64.store (i32.const 2048) (i64.const 0))
    (i32.store8 (i32.const 2056) (i32.const 0))
    (i32.store (i32.const 2064) (i32.const 1))
    (i64.store (i32.const 2072) (i64.const 1000000000))
    (i64.store (i32.const 2080) (i64.const 0))
    (i32.store16 (i32.const 2088) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 2048) (i32.const 2112) (i32.const 1) (i32.const 2144))))
  (func $hog (local $base i32) (local $k i32)
    ;; 1 MB at a time, every page touched; memory.grow's -1 at the maximum ends in a trap, as malloc's NULL would
    (loop $more
      (local.set $base (memory.grow (i32.const 16)))
      (if (i32.eq (local.get $base) (i32.const -1)) (then unreachable))
      (local.set $k (i32.const 0))
      (loop $touch
        (i32.store (i32.mul (i32.add (local.get $base) (local.get $k)) (i32.const 65536)) (i32.const 1))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br_if $touch (i32.lt_u (local.get $k) (i32.const 16))))
      (br $more)))
  (func (export "_start") (local $i i32)
    ${body.join('\n    ')})
)`;
}

let wabt: Promise<Awaited<ReturnType<typeof wabtInit>>> | undefined;

/** WAT text -> a WebAssembly binary */
export async function watToWasm(wat: string): Promise<Uint8Array> {
  wabt ??= wabtInit();
  const w = await wabt;
  const mod = w.parseWat('module.wat', wat);
  try {
    mod.validate();
    return Uint8Array.from(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

/** A WASI preview 1 command module doing what `o` says. */
export function buildWasiModule(o: WasiModuleOptions): Promise<Uint8Array> {
  return watToWasm(wasiModuleWat(o));
}
