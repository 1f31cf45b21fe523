/**
 * The workload fields of a service that need more than a type check: `args`, `added_files`,
 * `volumes` and `storage` (issue 10 point 8). One parser, used by the validator (errors and
 * warnings with paths, `oak validate` and the API answer) and by the worker (which must not trust
 * what arrives over MQTT).
 *
 * `added_files` entries: an http(s) URL (Oakestra's form: the file lands in the instance's files
 * directory under its URL's base name) or `{ "url", "path"?, "mode"? }` (ours: `path` is where the
 * file appears, absolute inside a container, relative to the work dir of a process).
 *
 * `volumes` entries:
 *  - `"<host path>:<container path>[:ro|rw]"` or `{ "source" | "host_path", "target" | "mount_path", "read_only" }`:
 *    a host directory, only under the worker's --volume-allow list;
 *  - `{ "name", "target" | "mount_path", "read_only" }`: a named volume, a directory the worker
 *    keeps per organisation and name across restarts and redeploys;
 *  - Oakestra's `{ "volume_id", "csi_driver", "mount_path", "config" }`: accepted, not honoured
 *    (a warning says so; no CSI plugins here).
 */
import type { FieldIssue } from './errors.ts';

export const MAX_ADDED_FILES = 32;
export const MAX_VOLUMES = 100;
/** the longest URL of an added file */
export const MAX_FILE_URL = 2048;
/** a named volume's name */
export const VOLUME_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
/** an added file's name when it has no `path`: the URL's last segment, sanitised */
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export interface AddedFile {
  url: string;
  /** containers: absolute path in the container; processes: relative to the work dir */
  path: string;
  /** file mode (default 0644) */
  mode: number;
  /** true when `path` was given (else it is `files/<name>` / `/oak/files/<name>`) */
  explicit: boolean;
}

export type VolumeSpec =
  | { kind: 'host'; source: string; target: string; readonly: boolean }
  | { kind: 'named'; name: string; target: string; readonly: boolean }
  | { kind: 'csi'; volume_id: string; csi_driver: string; target?: string | undefined };

export interface Parsed<T> {
  items: T[];
  errors: FieldIssue[];
  warnings: FieldIssue[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const at = (base: string, i: number, key?: string): string => `${base}[${i}]${key !== undefined ? `.${key}` : ''}`;
const shown = (s: string): string => JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}...` : s);

/** absolute, no "..", no NUL, not too long */
export function cleanAbsPath(p: string): boolean {
  return p.startsWith('/') && p.length <= 4096 && !p.split('/').includes('..') && !p.includes('\0');
}

/** relative path below a directory: no leading "/", no "..", no empty segments */
function cleanRelPath(p: string): boolean {
  return p !== '' && !p.startsWith('/') && p.length <= 1024 && !p.includes('\0') && p.split('/').every((s) => s !== '' && s !== '..' && s !== '.');
}

function checkUrl(u: unknown, path: string, errors: FieldIssue[]): string | undefined {
  if (typeof u !== 'string') {
    errors.push({ path, message: 'the file URL must be a string', hint: 'e.g. "https://example.com/config.json"' });
    return undefined;
  }
  if (u.length > MAX_FILE_URL) {
    errors.push({ path, message: `the file URL is ${u.length} characters long; at most ${MAX_FILE_URL} are allowed`, hint: 'use a shorter URL' });
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    errors.push({ path, message: `${shown(u)} is not a URL`, hint: 'write an http(s) URL, e.g. "https://example.com/config.json"' });
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    errors.push({ path, message: `${shown(u)}: only http and https URLs are fetched (not ${url.protocol.replace(/:$/, '')})`, hint: 'serve the file over http(s)' });
    return undefined;
  }
  if (url.username !== '' || url.password !== '') {
    errors.push({ path, message: 'the file URL must not carry a user name or password', hint: 'SLAs are readable by the organisation; use a URL without credentials' });
    return undefined;
  }
  return u;
}

/** The file name an added file gets when the SLA gives no path: its URL's last segment. */
export function fileNameOf(u: string): string | undefined {
  let last: string;
  try {
    last = decodeURIComponent(new URL(u).pathname.split('/').pop() ?? '');
  } catch {
    return undefined;
  }
  return FILE_NAME.test(last) && !last.includes('..') ? last : undefined;
}

/** `added_files` as files to fetch, or the problems at their paths. */
export function parseAddedFiles(value: unknown, base = 'added_files', virtualization?: string): Parsed<AddedFile> {
  const out: Parsed<AddedFile> = { items: [], errors: [], warnings: [] };
  if (value === undefined || value === null) return out;
  if (!Array.isArray(value)) {
    out.errors.push({ path: base, message: 'added_files must be a list', hint: 'e.g. "added_files": ["https://example.com/config.json"]' });
    return out;
  }
  if (value.length > MAX_ADDED_FILES) {
    out.errors.push({ path: base, message: `added_files has ${value.length} entries; at most ${MAX_ADDED_FILES} are allowed`, hint: 'pack the files into an image or fewer files' });
    return out;
  }
  const targets = new Map<string, number>();
  value.forEach((v, i) => {
    let url: string | undefined;
    let path: string | undefined;
    let mode = 0o644;
    let explicit = false;
    if (typeof v === 'string') {
      url = checkUrl(v, at(base, i), out.errors);
    } else if (isRecord(v)) {
      for (const k of Object.keys(v)) {
        if (k !== 'url' && k !== 'path' && k !== 'mode') out.errors.push({ path: at(base, i, k.slice(0, 64)), message: 'not a field of an added file', hint: 'an added file has "url", "path" and "mode"' });
      }
      if (v['url'] === undefined) {
        out.errors.push({ path: at(base, i, 'url'), message: 'an added file needs a url', hint: 'add "url": "https://example.com/config.json"' });
      } else url = checkUrl(v['url'], at(base, i, 'url'), out.errors);
      const p = v['path'];
      if (p !== undefined) {
        const absOk = typeof p === 'string' && cleanAbsPath(p) && p !== '/' && !p.endsWith('/');
        const relOk = typeof p === 'string' && cleanRelPath(p);
        const container = virtualization === undefined || virtualization === 'container' || virtualization === 'microvm';
        if (typeof p !== 'string' || !(absOk || (!container && relOk))) {
          out.errors.push({
            path: at(base, i, 'path'),
            message: `path ${typeof p === 'string' ? shown(p) : 'must be a string'}${typeof p === 'string' ? ' is not a file path without ".."' : ''}`,
            hint: container ? 'an absolute file path inside the container, e.g. "/etc/app/config.json"' : 'a path inside the work dir, e.g. "conf/app.json"',
          });
        } else {
          path = p;
          explicit = true;
        }
      }
      const m = v['mode'];
      if (m !== undefined) {
        const n = typeof m === 'string' && /^0?[0-7]{3}$/.test(m) ? parseInt(m, 8) : typeof m === 'number' && Number.isInteger(m) ? m : NaN;
        if (!(n >= 0 && n <= 0o777)) out.errors.push({ path: at(base, i, 'mode'), message: 'mode must be an octal string such as "0644" or "0755"', hint: 'e.g. "mode": "0755" for an executable' });
        else mode = n;
      }
    } else {
      out.errors.push({ path: at(base, i), message: 'an added file is a URL string or an object { "url", "path" }', hint: 'e.g. "https://example.com/config.json"' });
    }
    if (url === undefined) return;
    if (path === undefined) {
      const name = fileNameOf(url);
      if (name === undefined) {
        out.errors.push({ path: at(base, i), message: `the URL ${shown(url)} does not end in a file name`, hint: 'give the file a "path": { "url": "...", "path": "/etc/app/config.json" }' });
        return;
      }
      path = name;
    }
    const key = path.replace(/^\/+/, '');
    const before = targets.get(key);
    if (before !== undefined) {
      out.errors.push({ path: at(base, i), message: `two added files land at ${shown(path)} (also ${base}[${before}])`, hint: 'give one of them another "path"' });
      return;
    }
    targets.set(key, i);
    out.items.push({ url, path, mode, explicit });
  });
  return out;
}

/** `volumes` as mounts, or the problems at their paths (csi volumes become warnings). */
export function parseVolumeSpecs(value: unknown, base = 'volumes'): Parsed<VolumeSpec> {
  const out: Parsed<VolumeSpec> = { items: [], errors: [], warnings: [] };
  if (value === undefined || value === null) return out;
  if (!Array.isArray(value)) {
    out.errors.push({ path: base, message: 'volumes must be a list', hint: 'e.g. "volumes": [{ "name": "data", "target": "/data" }]' });
    return out;
  }
  if (value.length > MAX_VOLUMES) {
    out.errors.push({ path: base, message: `volumes has ${value.length} entries; at most ${MAX_VOLUMES} are allowed`, hint: 'mount fewer volumes' });
    return out;
  }
  const targets = new Map<string, number>();
  value.forEach((v, i) => {
    let spec: VolumeSpec | undefined;
    if (typeof v === 'string') {
      const parts = v.split(':');
      const ro = parts[2];
      if (parts.length < 2 || parts.length > 3 || (ro !== undefined && ro !== 'ro' && ro !== 'rw')) {
        out.errors.push({ path: at(base, i), message: `${shown(v)} is not "<host path>:<container path>[:ro]"`, hint: 'e.g. "/srv/data:/data:ro", or { "name": "data", "target": "/data" } for a named volume' });
        return;
      }
      spec = { kind: 'host', source: parts[0] ?? '', target: parts[1] ?? '', readonly: ro === 'ro' };
    } else if (isRecord(v)) {
      const target = v['target'] ?? v['mount_path'] ?? v['container_path'];
      const roRaw = v['read_only'] ?? v['readonly'] ?? false;
      if (typeof roRaw !== 'boolean') {
        out.errors.push({ path: at(base, i, 'read_only'), message: 'read_only must be true or false', hint: 'e.g. "read_only": true' });
        return;
      }
      if (v['csi_driver'] !== undefined || v['volume_id'] !== undefined) {
        const id = v['volume_id'];
        const drv = v['csi_driver'];
        if (typeof id !== 'string' || id === '') out.errors.push({ path: at(base, i, 'volume_id'), message: 'volume_id must be a non-empty string', hint: 'Oakestra\'s CSI volumes have "volume_id" and "csi_driver"' });
        else if (typeof drv !== 'string' || drv === '') out.errors.push({ path: at(base, i, 'csi_driver'), message: 'csi_driver must be a non-empty string', hint: 'Oakestra\'s CSI volumes have "volume_id" and "csi_driver"' });
        else if (target !== undefined && (typeof target !== 'string' || !cleanAbsPath(target))) out.errors.push({ path: at(base, i, 'mount_path'), message: 'mount_path must be an absolute path without ".."', hint: 'e.g. "/data"' });
        else {
          out.warnings.push({
            path: at(base, i),
            message: `CSI volume ${shown(id)} (driver ${shown(drv)}) is accepted but not honoured: workers here have no CSI plugins, nothing is mounted`,
            hint: 'use a named volume { "name": "data", "target": "/data" } or a host path under the worker\'s --volume-allow',
          });
          out.items.push({ kind: 'csi', volume_id: id, csi_driver: drv, target: typeof target === 'string' ? target : undefined });
        }
        return;
      }
      const name = v['name'];
      const source = v['source'] ?? v['host_path'];
      if (name !== undefined && source !== undefined) {
        out.errors.push({ path: at(base, i), message: 'a volume has either "name" (a named volume) or "source" (a host path), not both', hint: 'keep one of them' });
        return;
      }
      if (name !== undefined) {
        if (typeof name !== 'string' || !VOLUME_NAME_PATTERN.test(name)) {
          out.errors.push({ path: at(base, i, 'name'), message: `volume name ${typeof name === 'string' ? shown(name) : 'must be a string'}${typeof name === 'string' ? ' is not 1-63 letters, digits, ".", "_" or "-"' : ''}`, hint: 'e.g. "name": "data"' });
          return;
        }
        if (typeof target !== 'string') {
          out.errors.push({ path: at(base, i, 'target'), message: 'a volume needs a target (its path in the container)', hint: 'add "target": "/data"' });
          return;
        }
        spec = { kind: 'named', name, target, readonly: roRaw };
      } else if (source !== undefined) {
        if (typeof target !== 'string') {
          out.errors.push({ path: at(base, i, 'target'), message: 'a volume needs a target (its path in the container)', hint: 'add "target": "/data"' });
          return;
        }
        spec = { kind: 'host', source: typeof source === 'string' ? source : '', target, readonly: roRaw };
      } else {
        out.errors.push({ path: at(base, i), message: 'a volume needs "name" (a named volume) or "source" (a host directory)', hint: 'e.g. { "name": "data", "target": "/data" }' });
        return;
      }
    } else {
      out.errors.push({ path: at(base, i), message: 'a volume is "<host path>:<container path>[:ro]" or an object', hint: 'e.g. { "name": "data", "target": "/data" }' });
      return;
    }
    if (spec.kind === 'host' && !cleanAbsPath(spec.source)) {
      out.errors.push({ path: at(base, i, typeof v === 'string' ? undefined : 'source'), message: 'the host path must be an absolute path without ".."', hint: 'e.g. "/srv/data"' });
      return;
    }
    if (!cleanAbsPath(spec.target) || spec.target === '/') {
      out.errors.push({ path: at(base, i, typeof v === 'string' ? undefined : 'target'), message: 'the container path must be an absolute path without ".." (not "/")', hint: 'e.g. "/data"' });
      return;
    }
    const key = spec.target.replace(/\/+$/, '');
    const before = targets.get(key);
    if (before !== undefined) {
      out.errors.push({ path: at(base, i), message: `two volumes are mounted at ${shown(spec.target)} (also ${base}[${before}])`, hint: 'give each volume its own target' });
      return;
    }
    targets.set(key, i);
    out.items.push(spec);
  });
  return out;
}

/**
 * Why `storage` (MB) is or is not enforced for a virtualization: undefined when it is, else the
 * warning's message.
 */
export function storageNotEnforced(virtualization: string): string | undefined {
  switch (virtualization) {
    case 'process':
      return undefined; // a size-limited tmpfs work dir (see the process runtime)
    case 'container':
      return 'containerd\'s overlayfs snapshotter has no size quota, so the container\'s writable layer is not limited';
    default:
      return `the ${virtualization} runtime has no disk quota`;
  }
}
