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
const selected = files.filter((f) => filters.length === 0 || filters.some((x) => f.includes(x))).sort();
if (selected.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const concurrency = process.env.OAK_TEST_CONCURRENCY ?? '2';
// spec on the terminal; the time of each file to .e2e-tmp/test-times.txt (the suite's budget)
mkdirSync(join(root, '.e2e-tmp'), { recursive: true });
const reporters = ['--test-reporter=spec', '--test-reporter-destination=stdout', `--test-reporter=${join(root, 'scripts/test-times-reporter.mjs')}`, `--test-reporter-destination=${join(root, '.e2e-tmp/test-times.txt')}`];
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, ...reporters, ...selected], {
  cwd: root,
  stdio: 'inherit',
});
try {
  console.log(readFileSync(join(root, '.e2e-tmp/test-times.txt'), 'utf8').split('\n').slice(0, 16).join('\n'));
} catch { /* no times: the runner did not start */ }
process.exit(r.status ?? 1);
