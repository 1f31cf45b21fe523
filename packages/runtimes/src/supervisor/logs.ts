/**
 * Lines of an instance's log file: the last N (read backwards in chunks, so a big log costs only
 * what is shown), and following (poll the size, read what was appended) until told to stop.
 */
import { copyFile, open, rename, rm, stat } from 'node:fs/promises';

const CHUNK = 64 * 1024;

/** Byte offset where the last `n` lines of the file start. */
export async function tailOffset(path: string, n: number): Promise<number> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    if (n <= 0) return size;
    let pos = size;
    let newlines = 0;
    const buf = Buffer.alloc(CHUNK);
    // a trailing newline ends the last line; it does not start a new one
    let skipTrailing = true;
    while (pos > 0) {
      const len = Math.min(CHUNK, pos);
      pos -= len;
      await fh.read(buf, 0, len, pos);
      for (let i = len - 1; i >= 0; i--) {
        if (buf[i] !== 0x0a) {
          skipTrailing = false;
          continue;
        }
        if (skipTrailing) {
          skipTrailing = false;
          continue;
        }
        newlines++;
        if (newlines === n) return pos + i + 1;
      }
    }
    return 0;
  } finally {
    await fh.close();
  }
}

export interface FollowOptions {
  tail?: number | undefined;
  follow?: boolean | undefined;
  signal?: AbortSignal | undefined;
  /** follow ends (after a last read) once this says the writer is gone */
  isDone?: () => boolean | Promise<boolean>;
  pollMs?: number;
}

export async function* readLines(path: string, opts: FollowOptions = {}): AsyncGenerator<string> {
  let pos = opts.tail !== undefined ? await tailOffset(path, opts.tail) : 0;
  let partial = '';
  const decoder = new TextDecoder();
  const pollMs = opts.pollMs ?? 200;
  const buf = Buffer.alloc(CHUNK);
  const aborted = (): boolean => opts.signal?.aborted === true;
  for (;;) {
    if (aborted()) return;
    // decide "done" before reading, so that everything written before the end is still read
    const done = opts.follow === true && opts.isDone !== undefined ? await opts.isDone() : false;
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch {
      return; // removed (instance stopped)
    }
    if (size < pos) pos = 0; // truncated
    if (size > pos) {
      const fh = await open(path, 'r');
      try {
        while (pos < size) {
          const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, size - pos), pos);
          if (bytesRead === 0) break;
          pos += bytesRead;
          partial += decoder.decode(buf.subarray(0, bytesRead), { stream: true });
          const lines = partial.split('\n');
          partial = lines.pop() as string;
          for (const l of lines) {
            if (aborted()) return;
            yield l;
          }
        }
      } finally {
        await fh.close();
      }
    }
    if (opts.follow !== true || done) {
      if (partial !== '') yield partial;
      return;
    }
    await sleep(pollMs, opts.signal);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Moves a log file to `dst` (the NodeEngine's kept logs); a copy across file systems; no file: nothing. */
export async function keepLogFile(src: string, dst: string): Promise<void> {
  try {
    await rename(src, dst);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code !== 'EXDEV') throw err;
    await copyFile(src, dst);
    await rm(src, { force: true });
  }
}
