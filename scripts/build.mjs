#!/usr/bin/env node
// Builds each program into one ESM file, apps/<app>/dist/<binary>.mjs: our own workspace code is
// bundled (no TypeScript loader at run time, so start-up is fast and memory low on small devices);
// third-party packages stay external and load from node_modules as usual.
import { build } from 'esbuild';
import { existsSync } from 'node:fs';
import { buildDashboard } from './build-dashboard.mjs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const programs = [
  ['apps/oakd', 'oakd'],
  ['apps/root', 'oak-root'],
  ['apps/cluster', 'oak-cluster'],
  ['apps/node-engine', 'NodeEngine'],
  ['apps/netmanager', 'NetManager'],
  ['apps/cli', 'oak'],
].filter(([dir]) => existsSync(`${root}/${dir}/src/main.ts`));

const externalThirdParty = {
  name: 'external-third-party',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) =>
      args.kind === 'entry-point' || args.path.startsWith('@oak/') ? undefined : { path: args.path, external: true },
    );
  },
};

const started = Date.now();
const dashboard = buildDashboard(root);
await Promise.all(
  programs.map(([dir, bin]) =>
    build({
      absWorkingDir: root,
      entryPoints: [`${dir}/src/main.ts`],
      outfile: `${dir}/dist/${bin}.mjs`,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      sourcemap: 'linked',
      plugins: [externalThirdParty],
      logLevel: 'warning',
    }),
  ),
);
const dash = await dashboard;
console.log(`built ${programs.map(([d, b]) => `${d}/dist/${b}.mjs`).join(', ')} in ${Date.now() - started} ms`);
if (dash !== undefined) console.log(dash);
