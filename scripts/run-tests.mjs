#!/usr/bin/env node
// Runs every test file (**/test/**/*.test.ts outside node_modules) with node's test runner and tsx.
// Extra arguments filter the files by substring: `npm test -- store root`.
import { mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const files = [];
function walk(dir, inTest) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, inTest || name === 'test');
    else if (inTest && name.endsWith('.test.ts')) files.push(relative(root, p));
  }
}
for (const top of ['packages', 'apps', 'e2e', 'bench']) {
  try { walk(join(root, top), false); } catch { /* folder absent */ }
}
const filters = process.argv.slice(2);
// the longest files first, so that the last minutes are not one long file alone on one core:
// weights from the last run here (.e2e-tmp/test-times.txt), else the ones committed (scripts/test-weights.txt)
const weights = new Map();
for (const f of [join(root, 'scripts/test-weights.txt'), join(root, '.e2e-tmp/test-times.txt')]) {
  let text = '';
  try { text = readFileSync(f, 'utf8'); } catch { continue; }
  for (const m of text.matchAll(/^\s*([\d.]+) s {2}(\S+)$/gm)) weights.set(m[2], Number(m[1]));
}
const weight = (f) => weights.get(f) ?? (f.startsWith('e2e/') ? 30 : 2);
const selected = files.filter((f) => filters.length === 0 || filters.some((x) => f.includes(x))).sort().sort((a, b) => weight(b) - weight(a));
if (selected.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const concurrency = process.env.OAK_TEST_CONCURRENCY ?? '2';
// spec on the terminal; the time of each file to .e2e-tmp/test-times.txt (the suite's budget)
mkdirSync(join(root, '.e2e-tmp'), { recursive: true });
const reporters = ['--test-reporter=spec', '--test-reporter-destination=stdout', `--test-reporter=${join(root, 'scripts/test-times-reporter.mjs')}`, `--test-reporter-destination=${join(root, '.e2e-tmp/test-times.txt')}`];
const started = Date.now();
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, ...reporters, ...selected], {
  cwd: root,
  stdio: 'inherit',
});
try {
  console.log(readFileSync(join(root, '.e2e-tmp/test-times.txt'), 'utf8').split('\n').slice(0, 16).join('\n'));
  console.log(`the run took ${((Date.now() - started) / 1000).toFixed(0)} s with ${concurrency} files at a time`);
} catch { /* no times: the runner did not start */ }
process.exit(r.status ?? 1);
