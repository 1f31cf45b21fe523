/**
 * GPU devices for a container (issue 10). Two ways, tried in this order:
 *  1. CDI (the Container Device Interface): spec files in /etc/cdi and /var/run/cdi (JSON or
 *     YAML, as `nvidia-ctk cdi generate` writes them) name devices of kind `nvidia.com/gpu`
 *     (`nvidia.com/gpu=0`, `=GPU-<uuid>`, ...) with the edits a container needs: device nodes,
 *     mounts (driver libraries), hooks and environment. They are resolved here into plain values
 *     that buildSpec() (spec.ts) writes into the OCI spec.
 *  2. The NVIDIA container runtime hook (`nvidia-container-runtime-hook`, legacy mode): a prestart
 *     hook that reads NVIDIA_VISIBLE_DEVICES from the spec's environment.
 * Without either the instance fails with a reason that says what to install.
 * The parsing and resolution are pure (parseCdiSpec, resolveCdi); loading and stat()ing are the
 * thin I/O around them (loadCdiSpecs, resolveGpuAccess).
 */
import { access, readdir, readFile, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { RuntimeError } from '../types.ts';

export const CDI_GPU_KIND = 'nvidia.com/gpu';
export const DEFAULT_CDI_DIRS: readonly string[] = ['/etc/cdi', '/var/run/cdi'];
export const DEFAULT_NVIDIA_HOOKS: readonly string[] = ['/usr/bin/nvidia-container-runtime-hook', '/usr/local/bin/nvidia-container-runtime-hook'];
/** limits on what is read from a CDI directory */
export const CDI_MAX_FILE_BYTES = 1024 * 1024;
export const CDI_MAX_FILES = 64;
const MAX_EDITS = 1024;

export interface CdiDeviceNode {
  path: string;
  hostPath?: string | undefined;
  type?: 'c' | 'b' | undefined;
  major?: number | undefined;
  minor?: number | undefined;
  fileMode?: number | undefined;
  permissions?: string | undefined;
  uid?: number | undefined;
  gid?: number | undefined;
}

export interface CdiMount {
  hostPath: string;
  containerPath: string;
  type?: string | undefined;
  options?: string[] | undefined;
}

export const OCI_HOOK_NAMES = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'] as const;
export type OciHookName = (typeof OCI_HOOK_NAMES)[number];

export interface CdiHook {
  hookName: OciHookName;
  path: string;
  args?: string[] | undefined;
  env?: string[] | undefined;
  timeout?: number | undefined;
}

export interface CdiEdits {
  env: string[];
  deviceNodes: CdiDeviceNode[];
  mounts: CdiMount[];
  hooks: CdiHook[];
}

export interface CdiSpec {
  file: string;
  kind: string;
  devices: { name: string; edits: CdiEdits }[];
  edits: CdiEdits;
}

/** a device node with its numbers known: what goes into linux.devices */
export interface ResolvedDeviceNode {
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  fileMode?: number | undefined;
  permissions: string;
  uid?: number | undefined;
  gid?: number | undefined;
}

/** what buildSpec() applies for the GPUs of one container */
export type GpuAccess =
  | { kind: 'cdi'; env: string[]; devices: ResolvedDeviceNode[]; mounts: CdiMount[]; hooks: CdiHook[]; names: string[] }
  | { kind: 'hook'; path: string; visible: string };

class CdiFormatError extends Error {}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown, what: string, max = 4096): string {
  if (typeof v !== 'string' || v === '' || v.length > max || v.includes('\0')) throw new CdiFormatError(`${what} must be a non-empty string`);
  return v;
}

function optStr(v: unknown, what: string): string | undefined {
  return v === undefined || v === null ? undefined : str(v, what);
}

function absPath(v: unknown, what: string): string {
  const s = str(v, what);
  if (!s.startsWith('/')) throw new CdiFormatError(`${what} must be an absolute path`);
  return s;
}

function optInt(v: unknown, what: string, max = 2 ** 32): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw new CdiFormatError(`${what} must be a whole number`);
  return v;
}

function strList(v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.length > MAX_EDITS) throw new CdiFormatError(`${what} must be a list`);
  return v.map((x, i) => str(x, `${what}[${i}]`));
}

function list(v: unknown, what: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.length > MAX_EDITS) throw new CdiFormatError(`${what} must be a list (at most ${MAX_EDITS})`);
  return v;
}

function parseEdits(v: unknown, what: string): CdiEdits {
  if (v === undefined || v === null) return { env: [], deviceNodes: [], mounts: [], hooks: [] };
  if (!isObj(v)) throw new CdiFormatError(`${what} must be an object`);
  const env = strList(v['env'], `${what}.env`);
  for (const e of env) if (!/^[^=\s]+=/.test(e)) throw new CdiFormatError(`${what}.env entry ${JSON.stringify(e.slice(0, 40))} is not KEY=value`);
  const deviceNodes = list(v['deviceNodes'], `${what}.deviceNodes`).map((d, i): CdiDeviceNode => {
    const w = `${what}.deviceNodes[${i}]`;
    if (!isObj(d)) throw new CdiFormatError(`${w} must be an object`);
    const type = optStr(d['type'], `${w}.type`);
    if (type !== undefined && type !== 'c' && type !== 'b') throw new CdiFormatError(`${w}.type must be c or b (got ${JSON.stringify(type.slice(0, 10))})`);
    const permissions = optStr(d['permissions'], `${w}.permissions`);
    if (permissions !== undefined && !/^[rwm]{1,3}$/.test(permissions)) throw new CdiFormatError(`${w}.permissions must be made of r, w, m`);
    return {
      path: absPath(d['path'], `${w}.path`),
      hostPath: d['hostPath'] === undefined ? undefined : absPath(d['hostPath'], `${w}.hostPath`),
      type,
      major: optInt(d['major'], `${w}.major`),
      minor: optInt(d['minor'], `${w}.minor`),
      fileMode: optInt(d['fileMode'], `${w}.fileMode`, 0o7777),
      permissions,
      uid: optInt(d['uid'], `${w}.uid`),
      gid: optInt(d['gid'], `${w}.gid`),
    };
  });
  const mounts = list(v['mounts'], `${what}.mounts`).map((m, i): CdiMount => {
    const w = `${what}.mounts[${i}]`;
    if (!isObj(m)) throw new CdiFormatError(`${w} must be an object`);
    const options = m['options'] === undefined ? undefined : strList(m['options'], `${w}.options`);
    return { hostPath: absPath(m['hostPath'], `${w}.hostPath`), containerPath: absPath(m['containerPath'], `${w}.containerPath`), type: optStr(m['type'], `${w}.type`), options };
  });
  const hooks = list(v['hooks'], `${what}.hooks`).map((h, i): CdiHook => {
    const w = `${what}.hooks[${i}]`;
    if (!isObj(h)) throw new CdiFormatError(`${w} must be an object`);
    const name = str(h['hookName'], `${w}.hookName`, 64);
    if (!(OCI_HOOK_NAMES as readonly string[]).includes(name)) throw new CdiFormatError(`${w}.hookName ${JSON.stringify(name)} is not an OCI hook (${OCI_HOOK_NAMES.join(', ')})`);
    const env = h['env'] === undefined ? undefined : strList(h['env'], `${w}.env`);
    const args = h['args'] === undefined ? undefined : strList(h['args'], `${w}.args`);
    return { hookName: name as OciHookName, path: absPath(h['path'], `${w}.path`), args, env, timeout: optInt(h['timeout'], `${w}.timeout`, 3600) };
  });
  return { env, deviceNodes, mounts, hooks };
}

// the YAML parser loads with the first YAML CDI file (most workers have none)
const load = createRequire(import.meta.url);
let yamlModule: typeof Yaml | undefined;
const yamlLib = (): typeof Yaml => (yamlModule ??= load('yaml') as typeof Yaml);

/**
 * One CDI spec file (JSON or YAML). Throws with the file and the field when it does not read.
 * Only what oak uses is checked; unknown fields are ignored, as the CDI spec allows.
 */
export function parseCdiSpec(text: string, file: string): CdiSpec {
  if (text.length > CDI_MAX_FILE_BYTES) throw new Error(`${file}: larger than ${CDI_MAX_FILE_BYTES} bytes`);
  let doc: unknown;
  try {
    doc = file.endsWith('.json') ? JSON.parse(text) : yamlLib().parse(text, { maxAliasCount: 100 });
  } catch (e) {
    throw new Error(`${file}: not ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(e as Error).message.split('\n')[0] ?? ''}`);
  }
  try {
    if (!isObj(doc)) throw new CdiFormatError('the document must be an object');
    str(doc['cdiVersion'], 'cdiVersion', 32);
    const kind = str(doc['kind'], 'kind', 256);
    if (!/^[A-Za-z0-9][A-Za-z0-9.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(kind)) throw new CdiFormatError(`kind ${JSON.stringify(kind.slice(0, 60))} is not vendor/class`);
    const devices = list(doc['devices'], 'devices').map((d, i) => {
      if (!isObj(d)) throw new CdiFormatError(`devices[${i}] must be an object`);
      const name = str(d['name'], `devices[${i}].name`, 256);
      if (!/^[A-Za-z0-9][A-Za-z0-9_.:-]*$/.test(name)) throw new CdiFormatError(`devices[${i}].name ${JSON.stringify(name.slice(0, 60))} has characters a CDI name cannot have`);
      return { name, edits: parseEdits(d['containerEdits'], `devices[${i}].containerEdits`) };
    });
    return { file, kind, devices, edits: parseEdits(doc['containerEdits'], 'containerEdits') };
  } catch (e) {
    if (e instanceof CdiFormatError) throw new Error(`${file}: ${e.message}`);
    throw e;
  }
}

/** Reads the CDI spec files of `dirs` (later directories win on a device name); bad files are listed, not fatal. */
export async function loadCdiSpecs(dirs: readonly string[] = DEFAULT_CDI_DIRS): Promise<{ specs: CdiSpec[]; problems: string[] }> {
  const specs: CdiSpec[] = [];
  const problems: string[] = [];
  let files = 0;
  for (const dir of dirs) {
    let names: string[];
    try {
      names = (await readdir(dir)).filter((n) => /\.(json|ya?ml)$/.test(n)).sort();
    } catch {
      continue;
    }
    for (const n of names) {
      if (++files > CDI_MAX_FILES) {
        problems.push(`${dir}: more than ${CDI_MAX_FILES} CDI spec files; the rest are ignored`);
        return { specs, problems };
      }
      const file = join(dir, n);
      try {
        const st = await stat(file);
        if (!st.isFile()) continue;
        if (st.size > CDI_MAX_FILE_BYTES) throw new Error(`${file}: larger than ${CDI_MAX_FILE_BYTES} bytes`);
        specs.push(parseCdiSpec(await readFile(file, 'utf8'), file));
      } catch (e) {
        problems.push((e as Error).message);
      }
    }
  }
  return { specs, problems };
}

export interface GpuRef {
  index: number;
  uuid: string;
}

/**
 * The edits for the GPUs `gpus` from CDI specs of kind nvidia.com/gpu: each GPU by its index
 * (`nvidia.com/gpu=0`) or else its UUID; the spec-wide edits of every spec used come once.
 * A GPU no spec names is an error that lists the names the specs have.
 */
export function resolveCdi(gpus: readonly GpuRef[], specs: readonly CdiSpec[]): { env: string[]; deviceNodes: CdiDeviceNode[]; mounts: CdiMount[]; hooks: CdiHook[]; names: string[] } {
  const byName = new Map<string, { spec: CdiSpec; edits: CdiEdits }>();
  for (const s of specs) if (s.kind === CDI_GPU_KIND) for (const d of s.devices) byName.set(d.name, { spec: s, edits: d.edits });
  const used: CdiSpec[] = [];
  const edits: CdiEdits[] = [];
  const names: string[] = [];
  for (const g of gpus) {
    const name = byName.has(String(g.index)) ? String(g.index) : g.uuid !== '' && byName.has(g.uuid) ? g.uuid : undefined;
    if (name === undefined) {
      const known = [...byName.keys()].sort();
      throw new RuntimeError(
        'gpu_unavailable',
        `GPU ${g.index}: no CDI device ${CDI_GPU_KIND}=${g.index}${g.uuid !== '' ? ` or =${g.uuid}` : ''} (the CDI specs name ${known.length > 0 ? known.slice(0, 8).join(', ') : 'no nvidia.com/gpu device'}); regenerate them with \`nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml\``,
      );
    }
    const hit = byName.get(name) as { spec: CdiSpec; edits: CdiEdits };
    if (!used.includes(hit.spec)) used.push(hit.spec);
    edits.push(hit.edits);
    names.push(`${CDI_GPU_KIND}=${name}`);
  }
  const all = [...used.map((s) => s.edits), ...edits];
  const seenDev = new Set<string>();
  const seenMount = new Set<string>();
  const out = { env: [] as string[], deviceNodes: [] as CdiDeviceNode[], mounts: [] as CdiMount[], hooks: [] as CdiHook[], names };
  for (const e of all) {
    out.env.push(...e.env);
    for (const d of e.deviceNodes) {
      if (seenDev.has(d.path)) continue;
      seenDev.add(d.path);
      out.deviceNodes.push(d);
    }
    for (const m of e.mounts) {
      if (seenMount.has(m.containerPath)) continue;
      seenMount.add(m.containerPath);
      out.mounts.push(m);
    }
    out.hooks.push(...e.hooks);
  }
  return out;
}

/** Linux device numbers of a dev_t (glibc's gnu_dev_major/minor). */
export function devNumbers(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

async function numbered(d: CdiDeviceNode): Promise<ResolvedDeviceNode> {
  let { type, major, minor } = d;
  // CDI: a node without type is a character device; without numbers it is looked up on the host
  if (major === undefined || minor === undefined) {
    const host = d.hostPath ?? d.path;
    let st;
    try {
      st = await stat(host, { bigint: true });
    } catch (e) {
      throw new RuntimeError('gpu_unavailable', `CDI device node ${host}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} (is the NVIDIA driver loaded?)`, { cause: e });
    }
    if (!st.isCharacterDevice() && !st.isBlockDevice()) throw new RuntimeError('gpu_unavailable', `CDI device node ${host} is not a device`);
    const n = devNumbers(st.rdev);
    type ??= st.isBlockDevice() ? 'b' : 'c';
    major ??= n.major;
    minor ??= n.minor;
  }
  return { path: d.path, type: type ?? 'c', major, minor, fileMode: d.fileMode, permissions: d.permissions ?? 'rwm', uid: d.uid, gid: d.gid };
}

async function executable(p: string): Promise<boolean> {
  try {
    await access(p, constants.X_OK);
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

export interface GpuAccessOptions {
  cdiDirs?: readonly string[] | undefined;
  /** where the NVIDIA container runtime hook may be installed */
  hookPaths?: readonly string[] | undefined;
}

/**
 * How a container gets `gpus`: CDI when a spec of kind nvidia.com/gpu exists, else the NVIDIA
 * hook when installed, else a RuntimeError `gpu_unavailable` that says what is missing.
 */
export async function resolveGpuAccess(gpus: readonly GpuRef[], opts: GpuAccessOptions = {}): Promise<GpuAccess> {
  const dirs = opts.cdiDirs ?? DEFAULT_CDI_DIRS;
  const { specs, problems } = await loadCdiSpecs(dirs);
  if (specs.some((s) => s.kind === CDI_GPU_KIND)) {
    const r = resolveCdi(gpus, specs);
    const devices: ResolvedDeviceNode[] = [];
    for (const d of r.deviceNodes) devices.push(await numbered(d));
    return { kind: 'cdi', env: r.env, devices, mounts: r.mounts, hooks: r.hooks, names: r.names };
  }
  for (const p of opts.hookPaths ?? DEFAULT_NVIDIA_HOOKS) {
    if (await executable(p)) return { kind: 'hook', path: p, visible: gpus.map((g) => (g.uuid !== '' ? g.uuid : String(g.index))).join(',') };
  }
  const bad = problems.length > 0 ? `; unreadable CDI specs: ${problems.slice(0, 3).join('; ')}` : '';
  throw new RuntimeError(
    'gpu_unavailable',
    `no way to give this container its GPUs: no CDI spec of kind ${CDI_GPU_KIND} in ${dirs.join(', ')} and no nvidia-container-runtime-hook (${(opts.hookPaths ?? DEFAULT_NVIDIA_HOOKS).join(', ')})${bad}; install the NVIDIA Container Toolkit and run \`nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml\``,
  );
}
