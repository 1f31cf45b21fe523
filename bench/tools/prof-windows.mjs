#!/usr/bin/env node
/**
 * Self time of a --cpu-prof profile inside the deploy windows of trace-deploy.ts, by package or by
 * function: where the one thread of the 1-DOC spends a deploy.
 *
 *   TRACE_WINDOWS=1 node --cpu-prof --cpu-prof-dir /tmp/prof --cpu-prof-interval 100 \
 *     --import tsx bench/tools/trace-deploy.ts 30 | grep '^windows ' | cut -c9- > /tmp/windows.json
 *   node bench/tools/prof-windows.mjs /tmp/prof/<largest>.cpuprofile /tmp/windows.json [pkg|fn|in:<pkg>|up:<fn>] [top]
 *
 * Prints ms per deploy (the windows' sample time divided by their number). `in:kysely`: the samples
 * of a package (with what it calls), charged to the first function outside it up the stack (who
 * called it, and how much that costs). `up:openFileHandle`: the samples of that (native) function,
 * charged to the first of our functions up the stack.
 */
import { readFileSync } from 'node:fs';

const [profPath, winPath, mode = 'pkg', topArg = '40'] = process.argv.slice(2);
if (!profPath || !winPath) {
  console.error('usage: prof-windows.mjs <cpuprofile> <windows.json> [pkg|fn] [top]');
  process.exit(2);
}
const prof = JSON.parse(readFileSync(profPath, 'utf8'));
/** @type {[number, number][]} */
const windows = JSON.parse(readFileSync(winPath, 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n);
const inPkg = mode.startsWith('in:') ? mode.slice(3) : undefined;
const upFn = mode.startsWith('up:') ? mode.slice(3) : undefined;
/** for a sample whose own function is `fn`: the first of our functions (apps/, packages/) up the stack */
function ours(node, fn) {
  if (node.callFrame.functionName !== fn) return undefined;
  for (let n = parent.get(node.id); n; n = parent.get(n.id)) if (/\/(apps|packages)\//.test(n.callFrame.url || '')) return fnName(n);
  return '(none of ours)';
}
const fnName = (node) => {
  const f = node.callFrame;
  return `${f.functionName || '(anon)'} ${(f.url || '').replace(/^.*\/(node_modules|apps|packages)\//, '$1/')}:${f.lineNumber + 1}`;
};
/** the caller outside `pkg` of a sample inside it (undefined: the sample is not inside pkg) */
function callerOutside(node, pkg) {
  let seen = false;
  for (let n = node; n; n = parent.get(n.id)) {
    const inside = (n.callFrame.url || '').includes(`node_modules/${pkg}/`);
    if (inside) seen = true;
    else if (seen) return fnName(n);
  }
  return undefined;
}

function where(node) {
  const f = node.callFrame;
  const url = f.url || '';
  if (mode === 'fn') return fnName(node);
  if (!url) return f.functionName || '(native)';
  if (url.startsWith('node:')) return url;
  const m = url.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
  if (m) return m[1];
  const a = url.match(/\/(apps|packages)\/([^/]+)\/(?:src\/)?([^/]+)/);
  if (a) return `${a[1]}/${a[2]}/${a[3]}`;
  return url;
}

const totals = new Map();
let t = prof.startTime;
let inside = 0;
for (let i = 0; i < prof.samples.length; i++) {
  const dt = prof.timeDeltas[i] ?? 0;
  t += dt;
  if (!windows.some(([a, b]) => t >= a && t <= b)) continue;
  const node = byId.get(prof.samples[i]);
  if (!node) continue;
  const k = upFn !== undefined ? ours(node, upFn) : inPkg === undefined ? where(node) : callerOutside(node, inPkg);
  if (k === undefined) continue;
  totals.set(k, (totals.get(k) ?? 0) + dt);
  inside += dt;
}
const n = windows.length || 1;
const top = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg));
console.log(`${(inside / 1000 / n).toFixed(2)} ms of samples per deploy in ${windows.length} windows`);
for (const [k, us] of top) console.log(`${(us / 1000 / n).toFixed(3).padStart(8)} ms  ${k}`);
