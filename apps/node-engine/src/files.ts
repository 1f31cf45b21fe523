/**
 * The SLA's `added_files` on the worker: each URL fetched (http(s), a size cap per file and for
 * all of them, a deadline) into the instance's own directory `<dataDir>/files/<instance id>/`,
 * then handed to the driver: containers bind-mount each file at its path, microVMs get it in their
 * initramfs (moved to its path by their /init), processes get a copy in their work dir. The directory goes with the instance.
 */
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { parseAddedFiles } from '@oak/contracts';
import type { InstanceSpec } from '@oak/runtimes';

/** one file at most (bytes) */
export const MAX_FILE_BYTES = 64 * 1024 * 1024;
/** all files of one instance at most (bytes) */
export const MAX_FILES_BYTES = 256 * 1024 * 1024;
export const FETCH_TIMEOUT_MS = 60_000;
/** where a file without a `path` appears in a container */
export const CONTAINER_FILES_DIR = '/oak/files';

export interface FetchLimits {
  maxFileBytes?: number;
  maxTotalBytes?: number;
  timeoutMs?: number;
}

export type FilesResult = { ok: true; files: NonNullable<InstanceSpec['files']> } | { ok: false; reason: string };

/** The directory holding an instance's fetched files. */
export function filesDirOf(dataDir: string, id: string): string {
  return join(dataDir, 'files', id);
}

async function fetchOne(url: string, dest: string, maxBytes: number, deadline: number): Promise<number> {
  const left = deadline - Date.now();
  if (left <= 0) throw new Error('the deadline for fetching added files passed');
  const res = await fetch(url, { signal: AbortSignal.timeout(left), redirect: 'follow' });
  if (!res.ok || res.body === null) throw new Error(`HTTP ${res.status}`);
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > maxBytes) {
    await res.body.cancel().catch(() => undefined);
    throw new Error(`it is ${declared} bytes; at most ${maxBytes} are fetched`);
  }
  let n = 0;
  const cap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      if (n > maxBytes) cb(new Error(`it is over ${maxBytes} bytes; at most ${maxBytes} are fetched`));
      else cb(null, chunk);
    },
  });
  await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), cap, createWriteStream(dest, { mode: 0o644, flags: 'wx' }));
  return n;
}

/**
 * Fetches an instance's added files (already checked by the root, checked again here: the
 * command came over MQTT). Nothing is left behind on failure.
 */
export async function fetchAddedFiles(value: unknown, virtualization: string, dir: string, limits: FetchLimits = {}): Promise<FilesResult> {
  const parsed = parseAddedFiles(value, 'added_files', virtualization);
  const first = parsed.errors[0];
  if (first !== undefined) return { ok: false, reason: `${first.path}: ${first.message}` };
  if (parsed.items.length === 0) return { ok: true, files: [] };
  const maxFile = limits.maxFileBytes ?? MAX_FILE_BYTES;
  let budget = limits.maxTotalBytes ?? MAX_FILES_BYTES;
  const deadline = Date.now() + (limits.timeoutMs ?? FETCH_TIMEOUT_MS);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const files: NonNullable<InstanceSpec['files']> = [];
  for (const [i, f] of parsed.items.entries()) {
    const source = join(dir, String(i));
    try {
      budget -= await fetchOne(f.url, source, Math.min(maxFile, budget), deadline);
      await chmod(source, f.mode & 0o777);
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      const why = e instanceof Error ? (e.name === 'TimeoutError' ? `no answer within ${limits.timeoutMs ?? FETCH_TIMEOUT_MS} ms` : e.message) : String(e);
      return { ok: false, reason: `added_files[${i}]: cannot fetch ${f.url.slice(0, 200)}: ${why}` };
    }
    // containers and microVMs: an absolute path in their own root (default /oak/files/<name>)
    const target = virtualization === 'container' || virtualization === 'microvm'
      ? (f.explicit ? f.path : `${CONTAINER_FILES_DIR}/${f.path}`)
      : f.path.replace(/^\/+/, '');
    files.push({ source, target, mode: f.mode });
  }
  return { ok: true, files };
}
