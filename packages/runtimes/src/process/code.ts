/**
 * Where a process instance's executable comes from: an absolute path, a file:// URL, a bare
 * command name looked up on the minimal PATH, or an http(s) URL downloaded once into
 * `<dataDir>/code/` (cached by URL, made executable).
 */
import { createHash } from 'node:crypto';
import { accessSync, constants, createWriteStream, statSync } from 'node:fs';
import { access, chmod, mkdir, rename, rm, stat } from 'node:fs/promises';
import { basename, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RuntimeError } from '../types.ts';

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
  await mkdir(join(dest, '..'), { recursive: true });
  const tmp = `${dest}.${process.pid}.${Date.now()}.part`;
  try {
    await fetchToFile(url, tmp, { timeoutMs, maxBytes: DEFAULT_MAX_DOWNLOAD_BYTES, mode: 0o755 });
    await chmod(tmp, 0o755);
    await rename(tmp, dest);
  } catch (e) {
    await rm(tmp, { force: true });
    if (e instanceof RuntimeError) throw e;
    throw new RuntimeError('code_download_failed', `cannot store ${url}: ${(e as Error).message}`, { cause: e });
  }
  return dest;
}

/** the largest download of a driver's code (an executable, a wasm module), unless told otherwise */
export const DEFAULT_MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024;

/**
 * The one download of every driver's code (process executables, wasm modules): streams `url` into
 * `dest` (created, `mode`), at most `maxBytes` (checked against Content-Length first, then while
 * streaming), and returns the SHA-256 of what it wrote. On any failure `dest` is removed and a
 * RuntimeError `code_download_failed` says why (`code_too_large` over the cap).
 */
export async function fetchToFile(url: string, dest: string, opts: { timeoutMs: number; maxBytes: number; mode?: number }): Promise<{ sha256: string; bytes: number }> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(opts.timeoutMs), redirect: 'follow' });
  } catch (e) {
    throw new RuntimeError('code_download_failed', `cannot download ${url}: ${(e as Error).message}`, { cause: e });
  }
  if (!res.ok || res.body === null) {
    await res.body?.cancel().catch(() => undefined);
    throw new RuntimeError('code_download_failed', `cannot download ${url}: HTTP ${res.status}`);
  }
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > opts.maxBytes) {
    await res.body.cancel().catch(() => undefined);
    throw new RuntimeError('code_too_large', `cannot download ${url}: ${declared} bytes is over the ${opts.maxBytes}-byte cap`);
  }
  const hash = createHash('sha256');
  let bytes = 0;
  const out = createWriteStream(dest, { mode: opts.mode ?? 0o644 });
  const closed = new Promise<void>((resolve, reject) => {
    out.once('close', resolve);
    out.once('error', reject);
  });
  try {
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      if (bytes > opts.maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw new RuntimeError('code_too_large', `cannot download ${url}: more than the ${opts.maxBytes}-byte cap`);
      }
      hash.update(value);
      if (!out.write(value)) await new Promise<void>((r) => out.once('drain', () => r()));
    }
    out.end();
    await closed;
  } catch (e) {
    out.destroy();
    await closed.catch(() => undefined);
    await rm(dest, { force: true });
    if (e instanceof RuntimeError) throw e;
    throw new RuntimeError('code_download_failed', `cannot download ${url}: ${(e as Error).message}`, { cause: e });
  }
  return { sha256: hash.digest('hex'), bytes };
}
