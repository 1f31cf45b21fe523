/**
 * Release artifacts for fleet upgrades (issue 14), on the cluster: fetched from the root over the
 * link (artifact_request -> artifact_chunk, in order), checked against the sha256 the root's
 * worker_upgrade named, kept in memory only (the cluster keeps nothing on disk; the last two), and
 * served to this cluster's own workers over its HTTPS registration port.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ARTIFACT_CHUNK_BYTES, MAX_ARTIFACT_BYTES, type ClusterToRoot, type RootToCluster } from '@oak/contracts';

type Chunk = Extract<RootToCluster, { type: 'artifact_chunk' }>;

export interface ArtifactCacheOptions {
  /** sends to the root; false when the link is down */
  send: (msg: ClusterToRoot) => boolean;
  /** one chunk must arrive within this (default 30 s) */
  chunkTimeoutMs?: number;
  /** artifacts kept (default 2) */
  keep?: number;
}

export class ArtifactCache {
  readonly #o: ArtifactCacheOptions;
  readonly #kept = new Map<string, Buffer>();
  readonly #fetching = new Map<string, Promise<Buffer>>();
  readonly #waiting = new Map<string, { resolve: (c: Chunk) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();

  constructor(o: ArtifactCacheOptions) {
    this.#o = o;
  }

  get(sha256: string): Buffer | undefined {
    return this.#kept.get(sha256);
  }

  /** the artifact's bytes, from memory or fetched from the root (one fetch at a time per artifact) */
  fetch(sha256: string, size: number): Promise<Buffer> {
    const have = this.#kept.get(sha256);
    if (have) return Promise.resolve(have);
    let p = this.#fetching.get(sha256);
    if (!p) {
      p = this.#fetchFromRoot(sha256, size).finally(() => this.#fetching.delete(sha256));
      this.#fetching.set(sha256, p);
    }
    return p;
  }

  /** an artifact_chunk from the root */
  onChunk(msg: Chunk): void {
    const w = this.#waiting.get(msg.request_id);
    if (!w) return;
    this.#waiting.delete(msg.request_id);
    clearTimeout(w.timer);
    w.resolve(msg);
  }

  /** the link went down: fetches in flight fail (the root resends its command later) */
  linkDown(): void {
    for (const [id, w] of this.#waiting) {
      clearTimeout(w.timer);
      w.reject(new Error('the link to the root went down'));
      this.#waiting.delete(id);
    }
  }

  async #fetchFromRoot(sha256: string, size: number): Promise<Buffer> {
    if (!Number.isInteger(size) || size < 1 || size > MAX_ARTIFACT_BYTES) throw new Error(`artifact size ${size} out of range`);
    const parts: Buffer[] = [];
    let got = 0;
    while (got < size) {
      const msg = await this.#ask(sha256, got);
      if (msg.error !== undefined) throw new Error(`the root: ${msg.error}`);
      if (msg.total !== size) throw new Error(`the root has ${msg.total} bytes, the command said ${size}`);
      const data = Buffer.from(msg.data, 'base64');
      if (data.length === 0 || data.length > ARTIFACT_CHUNK_BYTES || msg.offset !== got) throw new Error('a chunk from the root is out of order or empty');
      parts.push(data);
      got += data.length;
    }
    const all = Buffer.concat(parts);
    const sum = createHash('sha256').update(all).digest('hex');
    if (all.length !== size || sum !== sha256) throw new Error(`the bytes from the root have sha256 ${sum}, not ${sha256}`);
    this.#kept.set(sha256, all);
    while (this.#kept.size > (this.#o.keep ?? 2)) this.#kept.delete(this.#kept.keys().next().value as string);
    return all;
  }

  #ask(sha256: string, offset: number): Promise<Chunk> {
    return new Promise((resolve, reject) => {
      const request_id = randomBytes(9).toString('base64url');
      const timer = setTimeout(() => {
        this.#waiting.delete(request_id);
        reject(new Error('the root did not answer for the artifact in time'));
      }, this.#o.chunkTimeoutMs ?? 30_000);
      this.#waiting.set(request_id, { resolve, reject, timer });
      if (!this.#o.send({ type: 'artifact_request', request_id, sha256, offset })) {
        clearTimeout(timer);
        this.#waiting.delete(request_id);
        reject(new Error('the root is unreachable'));
      }
    });
  }
}
