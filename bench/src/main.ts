/**
 * `npm run bench [-- name ...]`: runs the benchmarks, writes bench/results/<name>.json and the
 * table in bench/README.md. Every number is a ratio against a baseline measured in the same run.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Bench, BenchResult } from './types.ts';

const here = dirname(fileURLToPath(import.meta.url));
const resultsDir = join(here, '..', 'results');

/** every bench/src/<name>.ts that exports `bench` */
async function discover(): Promise<Map<string, Bench>> {
  const found = new Map<string, Bench>();
  for (const f of readdirSync(here).sort()) {
    if (!f.endsWith('.ts') || f === 'main.ts' || f === 'types.ts') continue;
    const mod = (await import(join(here, f))) as { bench?: Bench };
    if (typeof mod.bench === 'function') found.set(f.replace(/\.ts$/, ''), mod.bench);
  }
  return found;
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 1000) return n.toFixed(0);
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

function table(results: BenchResult[]): string {
  const lines = [
    '| benchmark | metric | ours | baseline | baseline is | ratio (ours/baseline) | better |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    for (const row of r.rows) {
      lines.push(`| ${r.name} | ${row.metric} | ${fmt(row.ours)} ${row.unit} | ${fmt(row.baseline)} ${row.unit} | ${row.baseline_name} | ${fmt(row.ratio)} | ${row.better} |`);
    }
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  // `--table`: only rebuild the README table from the stored results (after a merge)
  const tableOnly = process.argv.includes('--table');
  const wanted = tableOnly ? [] : process.argv.slice(2);
  const all = await discover();
  const names = tableOnly ? [] : wanted.length > 0 ? wanted : [...all.keys()];
  mkdirSync(resultsDir, { recursive: true });
  let failed = 0;
  for (const name of names) {
    const b = all.get(name);
    if (!b) {
      console.error(`unknown benchmark ${name}; have: ${[...all.keys()].join(', ')}`);
      process.exitCode = 2;
      return;
    }
    console.log(`== ${name}`);
    try {
      const r = await b();
      const out = { ...r, machine: { cpus: (await import('node:os')).availableParallelism(), node: process.version }, at: new Date().toISOString() };
      writeFileSync(join(resultsDir, `${name}.json`), JSON.stringify(out, null, 2) + '\n');
      console.log(table([r]));
    } catch (e) {
      failed++;
      console.error(`benchmark ${name} failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    }
  }
  // rebuild the README table from every stored result
  const stored: BenchResult[] = [];
  for (const f of readdirSync(resultsDir).sort()) {
    if (f.endsWith('.json')) stored.push(JSON.parse(readFileSync(join(resultsDir, f), 'utf8')) as BenchResult);
  }
  const readme = join(here, '..', 'README.md');
  const head = existsSync(readme) ? readFileSync(readme, 'utf8').split('<!-- results -->')[0] : '# Benchmarks\n\n';
  writeFileSync(readme, `${head}<!-- results -->\n${table(stored)}\n`);
  if (failed > 0) process.exitCode = 1;
}

await main();
