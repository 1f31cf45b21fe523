#!/usr/bin/env node
/**
 * Self time of a --cpu-prof profile inside the deploy windows of trace-deploy.ts, by package or by
 * function: where the one thread of the 1-DOC spends a deploy.
 *
 *   TRACE_WINDOWS=1 node --cpu-prof --cpu-prof-dir /tmp/prof --cpu-prof-interval 100 \
 *     --import tsx bench/tools/trace-deploy.ts 30 | grep '^windows ' | cut -c9- > /tmp/windows.json
 *   node bench/tools/prof-windows.mjs /tmp/prof/*.cpuprofile /tmp/windows.json [pkg|fn] [top]
 *
 * Prints ms per deploy (the windows' sample time divided by their number).
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

function where(node) {
  const f = node.callFrame;
  const url = f.url || '';
  if (mode === 'fn') return `${f.functionName || '(anon)'} ${url.replace(/^.*\/(node_modules|apps|packages)\//, '$1/')}:${f.lineNumber + 1}`;
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
  const k = where(node);
  totals.set(k, (totals.get(k) ?? 0) + dt);
  inside += dt;
}
const n = windows.length || 1;
const top = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg));
console.log(`${(inside / 1000 / n).toFixed(2)} ms of samples per deploy in ${windows.length} windows`);
for (const [k, us] of top) console.log(`${(us / 1000 / n).toFixed(3).padStart(8)} ms  ${k}`);
