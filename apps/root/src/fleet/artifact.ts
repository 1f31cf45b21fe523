/**
 * Checks an uploaded release artifact (issue 14) before the root keeps it: a gzip'd tar of one
 * directory `oak-node-engine-<version>-linux-<arch>/` whose `oak-release.json` says the same, with
 * no entry outside that directory (no absolute path, no `..`, no link out of it). Pure: bytes in,
 * the manifest or a precise error out. The worker checks the same again after the sha256.
 */
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { OakError, VERSION_PATTERN } from '@oak/contracts';

/** an unpacked artifact may be at most this large (the node-engine one is ~10 MB) */
export const MAX_UNPACKED_BYTES = 1024 * 1024 * 1024;

export interface ArtifactInfo {
  sha256: string;
  program: string;
  version: string;
  arch: string;
  size: number;
}

const bad = (why: string): OakError =>
  new OakError('OAK_VALIDATION', `not a NodeEngine release artifact: ${why}`, { hint: 'upload release/oak-node-engine-<version>-linux-<arch>.tar.gz as written by make dist' });

const field = (b: Buffer, off: number, len: number): string => {
  const s = b.subarray(off, off + len);
  const nul = s.indexOf(0);
  return s.subarray(0, nul < 0 ? len : nul).toString('utf8');
};

export function inspectArtifact(data: Buffer): ArtifactInfo {
  const sha256 = createHash('sha256').update(data).digest('hex');
  let tar: Buffer;
  try {
    tar = gunzipSync(data, { maxOutputLength: MAX_UNPACKED_BYTES });
  } catch (err) {
    throw bad(`it does not gunzip (${(err as Error).message.slice(0, 100)})`);
  }
  let top: string | undefined;
  let manifest: string | undefined;
  let longName: string | undefined;
  for (let off = 0; off + 512 <= tar.length; ) {
    const h = tar.subarray(off, off + 512);
    if (h.every((x) => x === 0)) break;
    const sizeText = field(h, 124, 12).trim();
    if (!/^[0-7]*$/.test(sizeText)) throw bad('a tar header is corrupt');
    const size = sizeText === '' ? 0 : parseInt(sizeText, 8);
    const type = String.fromCharCode(h[156] ?? 48);
    const prefix = h.subarray(257, 263).toString('latin1').startsWith('ustar') ? field(h, 345, 155) : '';
    let name = longName ?? (prefix !== '' ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
    longName = undefined;
    const body = off + 512;
    if (body + size > tar.length) throw bad('the tar archive is truncated');
    off = body + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      longName = field(tar.subarray(body, body + size), 0, size);
      continue;
    }
    if (type === 'x' || type === 'g') continue; // pax headers
    name = name.replace(/^\.\//, '');
    const parts = name.split('/').filter((p) => p !== '');
    if (name.startsWith('/') || parts.includes('..') || parts.length === 0) throw bad(`entry ${JSON.stringify(name.slice(0, 200))} leaves the artifact's directory`);
    top ??= parts[0];
    if (parts[0] !== top) throw bad(`more than one top directory (${top}, ${parts[0] ?? ''})`);
    if (type === '1' || type === '2') {
      const target = field(h, 157, 100);
      if (target.startsWith('/') || target.split('/').includes('..')) throw bad(`link ${JSON.stringify(name.slice(0, 200))} points outside the artifact`);
    } else if (!['0', '\0', '5', '7'].includes(type)) throw bad(`entry ${JSON.stringify(name.slice(0, 200))} is not a file, directory or link`);
    if (parts.length === 2 && parts[1] === 'oak-release.json' && (type === '0' || type === '\0')) manifest = tar.subarray(body, body + size).toString('utf8');
  }
  if (top === undefined) throw bad('the archive is empty');
  if (manifest === undefined) throw bad(`${top}/oak-release.json is missing`);
  let m: { program?: unknown; version?: unknown; arch?: unknown; os?: unknown };
  try {
    m = JSON.parse(manifest) as typeof m;
  } catch {
    throw bad('oak-release.json is not JSON');
  }
  if (m.program !== 'node-engine') throw bad(`it is the ${JSON.stringify(m.program)} artifact; a fleet upgrade takes node-engine`);
  if (typeof m.version !== 'string' || !new RegExp(VERSION_PATTERN).test(m.version)) throw bad('oak-release.json has no valid version');
  if (m.arch !== 'amd64' && m.arch !== 'arm64') throw bad('oak-release.json names no known arch (amd64, arm64)');
  if (top !== `oak-node-engine-${m.version}-linux-${m.arch}`) throw bad(`its directory ${top} does not match its manifest (${m.version}, ${m.arch})`);
  return { sha256, program: m.program, version: m.version, arch: m.arch, size: data.length };
}
