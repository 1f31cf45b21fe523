/**
 * Where a process instance's executable comes from: an absolute path, a file:// URL, a bare
 * command name looked up on the minimal PATH, or an http(s) URL downloaded once into
 * `<dataDir>/code/` (cached by URL, made executable).
 */
import { createHash } from 'node:crypto';
import { accessSync, constants, statSync } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { basename, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RuntimeError } from '../types.ts';
import { downloadFile } from '../supervisor/download.ts';

export const MINIMAL_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const downloads = new Map<string, Promise<string>>();

export async function resolveCode(code: string, dataDir: string, opts: { fetchTimeoutMs?: number } = {}): Promise<string> {
  if (/^https?:\/\//i.test(code)) {
    const dest = join(dataDir, 'code', `${createHash('sha256').update(code).digest('hex').slice(0, 24)}-${safeBase(code)}`);
    let p = downloads.get(dest);
    if (p === undefined) {
      p = download(code, dest, opts.fetchTimeoutMs ?? 60000).finally(() => downloads.delete(dest));
      downloads.set(dest, p);
    }
    return p;
  }
  let path: string;
  if (/^file:/i.test(code)) {
    try {
      path = fileURLToPath(code);
    } catch (e) {
      throw new RuntimeError('invalid_code', `code ${JSON.stringify(code)} is not a valid file URL`, { cause: e });
    }
  } else if (isAbsolute(code)) {
    path = code;
  } else if (!code.includes('/') && code !== '' && code !== '.' && code !== '..') {
    for (const dir of MINIMAL_PATH.split(':')) {
      const candidate = join(dir, code);
      if (await isExecutableFile(candidate)) return candidate;
    }
    throw new RuntimeError('code_not_found', `executable ${JSON.stringify(code)} not found on ${MINIMAL_PATH}`);
  } else {
    throw new RuntimeError('invalid_code', `code ${JSON.stringify(code)} must be an absolute path, a command name, or a file:// or http(s):// URL`);
  }
  await checkExecutable(path);
  return path;
}

/**
 * resolveCode() without awaits for an absolute path or a file:// URL that is an executable file
 * (the common case; two syscalls): undefined for anything else, which resolveCode() then handles
 * (and reports).
 */
export function resolveLocalCode(code: string): string | undefined {
  let path: string;
  if (isAbsolute(code)) path = code;
  else if (/^file:/i.test(code)) {
    try {
      path = fileURLToPath(code);
    } catch {
      return undefined;
    }
  } else return undefined;
  try {
    if (!statSync(path).isFile()) return undefined;
    accessSync(path, constants.X_OK);
    return path;
  } catch {
    return undefined;
  }
}

async function isExecutableFile(p: string): Promise<boolean> {
  try {
    const s = await stat(p);
    if (!s.isFile()) return false;
    await access(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function checkExecutable(path: string): Promise<void> {
  let s;
  try {
    s = await stat(path);
  } catch {
    throw new RuntimeError('code_not_found', `executable ${path} does not exist`);
  }
  if (!s.isFile()) throw new RuntimeError('code_not_executable', `${path} is not a regular file`);
  try {
    await access(path, constants.X_OK);
  } catch {
    throw new RuntimeError('code_not_executable', `${path} is not executable (chmod +x)`);
  }
}

function safeBase(url: string): string {
  let b = 'code';
  try {
    b = basename(new URL(url).pathname) || 'code';
  } catch {
    /* keep */
  }
  return b.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64);
}

async function download(url: string, dest: string, timeoutMs: number): Promise<string> {
  try {
    await access(dest, constants.X_OK);
    return dest; // cached
  } catch {
    /* not yet */
  }
  await downloadFile(url, dest, { timeoutMs, maxBytes: DEFAULT_MAX_DOWNLOAD_BYTES, mode: 0o755 });
  return dest;
}

/** the largest download of a driver's code (an executable, a wasm module), unless told otherwise */
export const DEFAULT_MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024;
