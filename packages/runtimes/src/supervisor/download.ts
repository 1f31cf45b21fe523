/**
 * One http(s) download for every driver (process executables, unikernel kernels/archives):
 * streamed to a temporary file next to the destination with a size cap and a timeout, hashed on
 * the way (sha256), then renamed into place. A failed or oversized download leaves no file.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { RuntimeError } from '../types.ts';

export interface DownloadOptions {
  /** abort after this long (default 60 s) */
  timeoutMs?: number | undefined;
  /** refuse a body larger than this (default: no cap) */
  maxBytes?: number | undefined;
  /** file mode of the result (default 0o644) */
  mode?: number | undefined;
}

export interface Downloaded {
  path: string;
  sha256: string;
  bytes: number;
}

export async function downloadFile(url: string, dest: string, opts: DownloadOptions = {}): Promise<Downloaded> {
  const max = opts.maxBytes ?? Number.POSITIVE_INFINITY;
  await mkdir(dirname(dest), { recursive: true });
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(opts.timeoutMs ?? 60000), redirect: 'follow' });
  } catch (e) {
    throw new RuntimeError('code_download_failed', `cannot download ${url}: ${(e as Error).message}`, { cause: e });
  }
  if (!res.ok || res.body === null) {
    await res.body?.cancel().catch(() => undefined);
    throw new RuntimeError('code_download_failed', `cannot download ${url}: HTTP ${res.status}`);
  }
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > max) {
    await res.body.cancel().catch(() => undefined);
    throw new RuntimeError('code_too_large', `cannot download ${url}: ${declared} bytes is over the ${max}-byte limit`);
  }
  const tmp = `${dest}.${process.pid}.${Date.now()}.part`;
  const hash = createHash('sha256');
  let bytes = 0;
  const out = createWriteStream(tmp, { mode: opts.mode ?? 0o644 });
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      bytes += chunk.byteLength;
      if (bytes > max) throw new RuntimeError('code_too_large', `cannot download ${url}: more than the ${max}-byte limit`);
      hash.update(chunk);
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', r));
    }
    await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
    await chmod(tmp, opts.mode ?? 0o644);
    await rename(tmp, dest);
  } catch (e) {
    out.destroy();
    await rm(tmp, { force: true });
    if (e instanceof RuntimeError) throw e;
    throw new RuntimeError('code_download_failed', `cannot download ${url}: ${(e as Error).message}`, { cause: e });
  }
  return { path: dest, sha256: hash.digest('hex'), bytes };
}
