// Builds apps/dashboard (Vite) into apps/dashboard/dist and checks its budget: what the browser
// loads for the first page (index.html and every script, style and preload it names) must stay
// at most FIRST_PAGE_BUDGET bytes gzipped, or the build fails. Views load later, on demand.
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

export const FIRST_PAGE_BUDGET = 250 * 1024;

/** The first page's files and their gzipped size (bytes). */
export function firstPageSize(dist) {
  const html = readFileSync(join(dist, 'index.html'));
  const refs = new Set();
  for (const m of html.toString('utf8').matchAll(/(?:src|href)="(\/assets\/[^"?#]+)"/g)) refs.add(m[1]);
  let total = gzipSync(html, { level: 9 }).length;
  const files = [];
  for (const ref of refs) {
    const size = gzipSync(readFileSync(join(dist, ref)), { level: 9 }).length;
    files.push([ref, size]);
    total += size;
  }
  return { total, files };
}

export async function buildDashboard(root) {
  const dir = join(root, 'apps/dashboard');
  if (!existsSync(join(dir, 'index.html'))) return undefined;
  const started = Date.now();
  const { build } = await import('vite');
  await build({ configFile: join(dir, 'vite.config.ts'), logLevel: 'warn' });
  // gzip copies the root sends to browsers that accept them (assets are immutable: compress once)
  const assets = join(dir, 'dist/assets');
  for (const name of readdirSync(assets)) {
    if (/\.(js|css|json|svg|html)$/.test(name)) writeFileSync(join(assets, `${name}.gz`), gzipSync(readFileSync(join(assets, name)), { level: 9 }));
  }
  const { total } = firstPageSize(join(dir, 'dist'));
  const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
  const line = `built apps/dashboard/dist in ${Date.now() - started} ms; first page ${kb(total)} gzipped (budget ${kb(FIRST_PAGE_BUDGET)})`;
  if (total > FIRST_PAGE_BUDGET) {
    console.error(line);
    throw new Error(`the dashboard's first page is ${kb(total)} gzipped, over its budget of ${kb(FIRST_PAGE_BUDGET)}: load more of it on demand (views/registry.ts)`);
  }
  return line;
}
