/**
 * The version of the running program: the `oak-release.json` next to its bundle when it runs from
 * a release artifact (scripts/dist.mjs writes it, `oak install` keeps it), else the build's own.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';

const VERSION = /^\d{1,6}\.\d{1,6}\.\d{1,6}(-[0-9A-Za-z.]{1,40})?$/;

/** the release manifest next to the main script (the real path: through `current` links), if any */
export function releaseManifest(mainScript: string | undefined = process.argv[1]): { program: string; version: string; arch: string; dir: string } | undefined {
  if (mainScript === undefined) return undefined;
  try {
    const dir = dirname(realpathSync(mainScript));
    const m = JSON.parse(readFileSync(join(dir, 'oak-release.json'), 'utf8')) as { program?: unknown; version?: unknown; arch?: unknown };
    if (typeof m.version !== 'string' || !VERSION.test(m.version) || typeof m.program !== 'string') return undefined;
    return { program: m.program, version: m.version, arch: typeof m.arch === 'string' ? m.arch : '', dir };
  } catch {
    return undefined;
  }
}

/** the release's version, or `fallback` (the build's constant) outside a release */
export function releaseVersion(fallback: string, mainScript?: string): string {
  return releaseManifest(mainScript)?.version ?? fallback;
}
