#!/usr/bin/env node
// `make dist`: one release artifact per program, release/oak-<program>-<version>-linux-<arch>.tar.gz,
// plus SHA256SUMS (docs/deployment.md). Each artifact holds the program's bundles (scripts/build.mjs
// must have run), exactly the third-party packages those bundles import at run time (found from
// esbuild's metafile, then their dependencies), the installer (oak-install.mjs, install.sh) and the
// licence notices of every package it carries. Nothing is compiled or fetched on the device.
//
//   node scripts/dist.mjs [--out dir] [--version v] [--only program,...] [--arch amd64,arm64]
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values: opts } = parseArgs({
  options: { out: { type: 'string' }, version: { type: 'string' }, only: { type: 'string' }, arch: { type: 'string' } },
});
const version = opts.version ?? process.env.OAK_VERSION ?? readFileSync(join(root, 'VERSION'), 'utf8').trim();
if (!/^\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$/.test(version)) throw new Error(`version ${JSON.stringify(version)} is not x.y.z[-pre]`);
const outDir = opts.out ?? join(root, 'release');

// program -> the bundles it ships (app dir, binary) and the roles `oak install` gives it
const PROGRAMS = {
  'node-engine': { bins: [['apps/node-engine', 'NodeEngine'], ['apps/netmanager', 'NetManager']], roles: ['worker'], native: false },
  cluster: { bins: [['apps/cluster', 'oak-cluster']], roles: ['cluster'], native: false },
  root: { bins: [['apps/root', 'oak-root']], roles: ['root'], native: true },
  oakd: { bins: [['apps/oakd', 'oakd']], roles: ['full'], native: true },
  cli: { bins: [['apps/cli', 'oak']], roles: ['cli'], native: false },
};
// native packages are built for this machine only: arm64 artifacts exist for the pure-JS programs
const HOST_ARCH = { x64: 'amd64', arm64: 'arm64' }[process.arch];
const ARCHES = (opts.arch ?? 'amd64,arm64').split(',');
const only = opts.only ? opts.only.split(',') : Object.keys(PROGRAMS);

const installer = join(root, 'apps/cli/dist/oak-install.mjs');
for (const p of only) for (const [dir, bin] of PROGRAMS[p].bins) if (!existsSync(join(root, dir, 'dist', `${bin}.mjs`))) throw new Error(`${dir}/dist/${bin}.mjs is missing: run node scripts/build.mjs first`);
if (!existsSync(installer)) throw new Error('apps/cli/dist/oak-install.mjs is missing: run node scripts/build.mjs first');

/** the bare package names a program's bundle imports (esbuild's metafile of the same build) */
async function externalsOf(dir) {
  const r = await build({
    absWorkingDir: root, entryPoints: [`${dir}/src/main.ts`], bundle: true, platform: 'node', format: 'esm', target: 'node20',
    write: false, metafile: true, outfile: '/tmp/oak-dist-probe.mjs', logLevel: 'error',
    plugins: [{ name: 'ext', setup(b) { b.onResolve({ filter: /^[^./]/ }, (a) => (a.kind === 'entry-point' || a.path.startsWith('@oak/') ? undefined : { path: a.path, external: true })); } }],
  });
  const names = new Set();
  for (const o of Object.values(r.metafile.outputs)) {
    for (const i of o.imports) {
      if (!i.external || i.path.startsWith('node:')) continue;
      const parts = i.path.split('/');
      names.add(i.path.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]);
    }
  }
  return [...names];
}

/** the directory of package `name` as Node would find it from `fromDir` */
function findPackage(name, fromDir) {
  for (let d = fromDir; ; d = dirname(d)) {
    const p = join(d, 'node_modules', name);
    if (existsSync(join(p, 'package.json'))) return p;
    if (d === dirname(d)) return undefined;
  }
}

/**
 * The closure of run-time packages (dependencies, present optional dependencies, present peers),
 * each with where it goes in the artifact: at the top of node_modules, or nested under the package
 * that needs it when another version already took the top.
 */
function closure(entries) {
  const placed = new Map(); // real dir -> destination (relative)
  const top = new Map(); // name -> real dir at node_modules/<name>
  const queue = entries.map(([name, from]) => ({ name, from, parentDest: '' }));
  while (queue.length > 0) {
    const { name, from, parentDest, optional } = queue.shift();
    const dir = findPackage(name, from);
    if (!dir) {
      if (optional) continue;
      throw new Error(`package ${name} (needed from ${relative(root, from)}) is not installed`);
    }
    if (placed.has(dir)) continue;
    let dest;
    if (!top.has(name) || top.get(name) === dir) {
      top.set(name, dir);
      dest = join('node_modules', name);
    } else dest = join(parentDest, 'node_modules', name);
    placed.set(dir, dest);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    for (const d of Object.keys(pkg.dependencies ?? {})) queue.push({ name: d, from: dir, parentDest: dest });
    for (const d of Object.keys(pkg.optionalDependencies ?? {})) queue.push({ name: d, from: dir, parentDest: dest, optional: true });
    for (const d of Object.keys(pkg.peerDependencies ?? {})) queue.push({ name: d, from: dir, parentDest: dest, optional: true });
  }
  return placed;
}

// what a device never needs from a package: its sources of native code, tests, types, maps
const SKIP_NAMES = new Set(['node_modules', 'test', 'tests', '__tests__', '.github', 'deps', 'obj', 'obj.target', 'binding.gyp', 'src']);
const SKIP_RE = /\.(d\.ts|d\.mts|d\.cts|map|md|markdown|a|o|gyp|cc|cpp|h)$/;
function copyPackage(src, dest) {
  const keepSrc = !existsSync(join(src, 'binding.gyp')); // `src` is JavaScript in most packages
  cpSync(src, dest, {
    recursive: true,
    filter: (p) => {
      if (p === src) return true;
      const base = p.slice(p.lastIndexOf('/') + 1);
      if (/^(LICEN[CS]E|COPYING|NOTICE)/i.test(base)) return true;
      if (base === 'node_modules' || base === '.github' || base === 'test_extension.node') return false;
      if (!keepSrc && SKIP_NAMES.has(base)) return false;
      if (['test', 'tests', '__tests__'].includes(base)) return false;
      return !SKIP_RE.test(base);
    },
  });
}

/** a package carrying compiled code (a .node file): it runs only on the architecture it was built for */
function hasNative(dir, depth = 0) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isFile() && e.name.endsWith('.node')) return true;
    if (e.isDirectory() && e.name !== 'node_modules' && depth < 3 && hasNative(join(dir, e.name), depth + 1)) return true;
  }
  return false;
}

function notices(placed) {
  const rows = [...placed.keys()].map((dir) => {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    const files = readdirSync(dir).filter((f) => /^(LICEN[CS]E|COPYING|NOTICE)/i.test(f)).sort();
    const license = typeof pkg.license === 'string' ? pkg.license : (pkg.license?.type ?? 'see package');
    return { name: pkg.name, version: pkg.version, license, text: files.map((f) => readFileSync(join(dir, f), 'utf8').trim()).join('\n\n') };
  }).sort((a, b) => a.name.localeCompare(b.name));
  const head = ['Third-party software in this artifact (name, version, licence), then each licence text as the package ships it.', ''];
  for (const r of rows) head.push(`${r.name}@${r.version}  ${r.license}`);
  for (const r of rows) head.push('', '='.repeat(78), `${r.name}@${r.version}  (${r.license})`, '-'.repeat(78), r.text || `(the package ships no licence file; package.json says: ${r.license})`);
  return { text: `${head.join('\n')}\n`, rows };
}

const INSTALL_SH = `#!/bin/sh
# Installs this artifact: ./install.sh --help. Needs Node.js 20 or newer on the PATH (or NODE=...),
# nothing else and no network.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
node=\${NODE:-$(command -v node || true)}
if [ -z "$node" ]; then echo "install.sh: Node.js 20 or newer is needed (node is not on the PATH; set NODE=/path/to/node)" >&2; exit 2; fi
major=$("$node" -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then echo "install.sh: Node.js 20 or newer is needed ($node is $("$node" --version))" >&2; exit 2; fi
exec "$node" "$here/oak-install.mjs" --artifact-dir "$here" "$@"
`;

function sizeOf(p) {
  const s = statSync(p);
  if (!s.isDirectory()) return s.size;
  let n = 0;
  for (const e of readdirSync(p)) n += sizeOf(join(p, e));
  return n;
}
const du = (p) => Number(execFileSync('du', ['-sk', p], { encoding: 'utf8' }).split('\t')[0]) * 1024;
const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;

mkdirSync(outDir, { recursive: true });
const staging = join(outDir, '.staging');
rmSync(staging, { recursive: true, force: true });
const made = [];
for (const program of only) {
  const spec = PROGRAMS[program];
  const entries = [];
  for (const [dir] of spec.bins) for (const n of await externalsOf(dir)) entries.push([n, join(root, dir)]);
  const placed = closure(entries);
  const nat = [...placed.keys()].filter((d) => hasNative(d));
  for (const arch of ARCHES) {
    if (spec.native && arch !== HOST_ARCH) continue; // a native package built here would not load there
    const name = `oak-${program}-${version}-linux-${arch}`;
    const dir = join(staging, name);
    mkdirSync(dir, { recursive: true });
    for (const [d, bin] of spec.bins) cpSync(join(root, d, 'dist', `${bin}.mjs`), join(dir, `${bin}.mjs`));
    cpSync(installer, join(dir, 'oak-install.mjs'));
    for (const [src, dest] of placed) copyPackage(src, join(dir, dest));
    // node_modules/.package-lock-free: Node resolves these by directory alone
    const n = notices(placed);
    writeFileSync(join(dir, 'THIRD-PARTY-NOTICES.txt'), n.text);
    writeFileSync(join(dir, 'install.sh'), INSTALL_SH);
    chmodSync(join(dir, 'install.sh'), 0o755);
    const manifest = {
      program, version, os: 'linux', arch, node: '>=20', roles: spec.roles,
      bins: Object.fromEntries(spec.bins.map(([, b]) => [b, `${b}.mjs`])),
      packages: n.rows.map((r) => `${r.name}@${r.version}`),
      native: nat.map((d) => JSON.parse(readFileSync(join(d, 'package.json'), 'utf8')).name),
    };
    writeFileSync(join(dir, 'oak-release.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    const tarball = join(outDir, `${name}.tar.gz`);
    execFileSync('tar', ['-czf', tarball, '--owner=0', '--group=0', '--sort=name', '--mtime=@0', '-C', staging, name]);
    made.push({ name: `${name}.tar.gz`, tarball, size: statSync(tarball).size, files: sizeOf(dir), disk: du(dir), packages: n.rows.length });
  }
}
rmSync(staging, { recursive: true, force: true });
// SHA256SUMS over every artifact in the directory (sha256sum -c SHA256SUMS checks them)
const sums = readdirSync(outDir).filter((f) => f.endsWith('.tar.gz')).sort()
  .map((f) => `${createHash('sha256').update(readFileSync(join(outDir, f))).digest('hex')}  ${f}`);
writeFileSync(join(outDir, 'SHA256SUMS'), `${sums.join('\n')}\n`);
console.log('artifact                                          tar.gz     unpacked   on disk    packages');
for (const m of made) console.log(`${m.name.padEnd(50)}${mb(m.size).padEnd(11)}${mb(m.files).padEnd(11)}${mb(m.disk).padEnd(11)}${m.packages}`);
console.log(`wrote ${made.length} artifacts and SHA256SUMS to ${relative(process.cwd(), outDir) || '.'}`);
