/**
 * What a local restart needs beyond the deploy command (issue 10): the added files as fetched
 * (where each one lies on the worker, where it goes in the instance, its mode) and the GPUs the
 * instance holds (index and UUID, as its environment names them). Written to the instance's own
 * directory `<dataDir>/files/<instance id>/restart.json` before the first start, read back when a
 * restarted NodeEngine takes up a re-adopted instance, so that its later local restarts start it
 * exactly as before. The directory goes with the instance (undeploy, replacement, retention).
 *
 * Why not a label beside `oak.restarts`: containerd refuses a label over 4096 bytes, and 32 added
 * files with their paths do not fit; the record is the NodeEngine's, for every driver alike.
 */
import { randomBytes } from 'node:crypto';
import { readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_ADDED_FILES } from '@oak/contracts';
import type { InstanceSpec } from '@oak/runtimes';

export const RUN_RECORD = 'restart.json';
/** a record is a few KB; anything much larger is not ours */
export const MAX_RUN_RECORD_BYTES = 256 * 1024;
const MAX_GPUS = 64;
const MAX_TARGET = 4096;

export interface RunRecord {
  files?: NonNullable<InstanceSpec['files']> | undefined;
  gpus?: NonNullable<InstanceSpec['gpus']> | undefined;
}

/** Whether a spec has anything a restart could not rebuild from its deploy command. */
export function needsRunRecord(spec: InstanceSpec): boolean {
  return (spec.files?.length ?? 0) > 0 || (spec.gpus?.length ?? 0) > 0;
}

/** Writes the record of `spec` into `dir` (atomically: a crash leaves the old one or the new one). */
export async function writeRunRecord(dir: string, spec: InstanceSpec): Promise<void> {
  const rec: RunRecord = {};
  if (spec.files !== undefined && spec.files.length > 0) rec.files = spec.files.map((f) => ({ source: f.source, target: f.target, mode: f.mode }));
  if (spec.gpus !== undefined && spec.gpus.length > 0) rec.gpus = spec.gpus.map((g) => ({ index: g.index, uuid: g.uuid }));
  const tmp = join(dir, `.${RUN_RECORD}.${randomBytes(4).toString('hex')}`);
  try {
    await writeFile(tmp, JSON.stringify({ v: 1, ...rec }), { mode: 0o600, flag: 'wx' });
    await rename(tmp, join(dir, RUN_RECORD));
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
}

/**
 * What a restart of the instance whose directory is `dir` gets beyond its command: the record;
 * nothing when there is none and nothing needs one (no fetched files in `dir`, no GPUs held);
 * else why the instance cannot be restarted as it first started.
 */
export async function restartExtras(dir: string, holdsGpus: boolean): Promise<ReadRecord> {
  const r = await readRunRecord(dir);
  if (r.ok || !r.missing) return r;
  const fetched = (await readdir(dir).catch(() => [] as string[])).some((n) => /^\d{1,2}$/.test(n));
  if (!fetched && !holdsGpus) return { ok: true, record: {} };
  return { ...r, reason: `${r.reason} in ${dir} although it ${fetched ? 'has fetched files' : 'holds GPUs'}` };
}

export type ReadRecord = { ok: true; record: RunRecord } | { ok: false; reason: string; missing: boolean };

/**
 * The record in `dir`, checked: every file's source must be one of the fetched files in `dir`
 * itself (`<dir>/<n>`), targets plain strings, modes permission bits, GPUs small indices. A
 * record that is missing, unreadable or malformed is a reason, never a partial record.
 */
export async function readRunRecord(dir: string): Promise<ReadRecord> {
  let text: string;
  try {
    const buf = await readFile(join(dir, RUN_RECORD));
    if (buf.length > MAX_RUN_RECORD_BYTES) return { ok: false, missing: false, reason: `${RUN_RECORD} is ${buf.length} bytes (at most ${MAX_RUN_RECORD_BYTES})` };
    text = buf.toString('utf8');
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    return { ok: false, missing, reason: missing ? `no ${RUN_RECORD}` : `${RUN_RECORD}: ${(e as Error).message}` };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, missing: false, reason: `${RUN_RECORD} is not JSON` };
  }
  if (typeof raw !== 'object' || raw === null || (raw as { v?: unknown }).v !== 1) return { ok: false, missing: false, reason: `${RUN_RECORD} is not a version 1 record` };
  const o = raw as { files?: unknown; gpus?: unknown };
  const record: RunRecord = {};
  if (o.files !== undefined) {
    if (!Array.isArray(o.files) || o.files.length > MAX_ADDED_FILES) return { ok: false, missing: false, reason: `${RUN_RECORD}: files is not a list of at most ${MAX_ADDED_FILES}` };
    const files: NonNullable<RunRecord['files']> = [];
    for (const [i, f] of (o.files as unknown[]).entries()) {
      const x = (typeof f === 'object' && f !== null ? f : {}) as { source?: unknown; target?: unknown; mode?: unknown };
      if (typeof x.source !== 'string' || !x.source.startsWith(`${dir}/`) || !/^\d{1,2}$/.test(x.source.slice(dir.length + 1))) {
        return { ok: false, missing: false, reason: `${RUN_RECORD}: files[${i}] does not lie in ${dir}` };
      }
      if (typeof x.target !== 'string' || x.target === '' || x.target.length > MAX_TARGET || x.target.includes('\0')) return { ok: false, missing: false, reason: `${RUN_RECORD}: files[${i}] has no usable target` };
      if (typeof x.mode !== 'number' || !Number.isInteger(x.mode) || x.mode < 0 || x.mode > 0o7777) return { ok: false, missing: false, reason: `${RUN_RECORD}: files[${i}] has no usable mode` };
      files.push({ source: x.source, target: x.target, mode: x.mode });
    }
    if (files.length > 0) record.files = files;
  }
  if (o.gpus !== undefined) {
    if (!Array.isArray(o.gpus) || o.gpus.length > MAX_GPUS) return { ok: false, missing: false, reason: `${RUN_RECORD}: gpus is not a list of at most ${MAX_GPUS}` };
    const gpus: NonNullable<RunRecord['gpus']> = [];
    for (const [i, g] of (o.gpus as unknown[]).entries()) {
      const x = (typeof g === 'object' && g !== null ? g : {}) as { index?: unknown; uuid?: unknown };
      if (typeof x.index !== 'number' || !Number.isInteger(x.index) || x.index < 0 || x.index > 9999) return { ok: false, missing: false, reason: `${RUN_RECORD}: gpus[${i}] has no usable index` };
      if (typeof x.uuid !== 'string' || x.uuid.length > 80 || !/^[A-Za-z0-9-]*$/.test(x.uuid)) return { ok: false, missing: false, reason: `${RUN_RECORD}: gpus[${i}] has no usable uuid` };
      gpus.push({ index: x.index, uuid: x.uuid });
    }
    if (gpus.length > 0) record.gpus = gpus;
  }
  return { ok: true, record };
}
