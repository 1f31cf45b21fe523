/**
 * CPU architectures (issue 10, Oakestra's SLA `arch`): a service may list the architectures it
 * runs on; a unikernel's comma-separated `code` URLs are matched to the list by index. Workers
 * report their architecture in Go's names (`amd64`, `arm64`, ...), as Oakestra's NodeEngine does;
 * an SLA may also write the kernel's names (`x86_64`, `aarch64`). The one table of names for
 * everything on a worker too: the unikernel driver matches its URLs with it, the image pullers
 * pick an OCI platform with it (Node's `process.arch` names, `x64`, `ia32`, read through
 * `goArchOf`). Pure.
 */

/** entries of an SLA's arch list, and the length of one */
export const ARCH_LIMITS = { items_max: 16, name_max: 32 } as const;
export const ARCH_PATTERN = '^[A-Za-z0-9_-]{1,32}$';

const ALIASES: Record<string, string> = {
  amd64: 'amd64',
  x86_64: 'amd64',
  'x86-64': 'amd64',
  x64: 'amd64',
  arm64: 'arm64',
  aarch64: 'arm64',
  arm: 'arm',
  armv7: 'arm',
  armv7l: 'arm',
  armhf: 'arm',
  i386: '386',
  i686: '386',
  ia32: '386',
  '386': '386',
  riscv64: 'riscv64',
  ppc64le: 'ppc64le',
  s390x: 's390x',
  loong64: 'loong64',
  loongarch64: 'loong64',
  mipsel: 'mipsle',
  mipsle: 'mipsle',
};

/** Go's name of an architecture (`x86_64` -> `amd64`); an unknown name lower-cased as it is. */
export function normalizeArch(name: string): string {
  const n = name.trim().toLowerCase();
  return ALIASES[n] ?? n;
}

/**
 * Go's name of the architecture Node reports as `nodeArch` (`process.arch`): the table above,
 * except that Node's `ppc64` on Linux is the little-endian one (Go's `ppc64le`; Node runs on
 * big-endian ppc64 only on AIX).
 */
export function goArchOf(nodeArch: string): string {
  return nodeArch === 'ppc64' ? 'ppc64le' : normalizeArch(nodeArch);
}

/** Whether a worker of architecture `workerArch` may run a service listing `allowed` (none listed: any). */
export function archAllowed(allowed: readonly string[] | undefined, workerArch: string | undefined): boolean {
  if (allowed === undefined || allowed.length === 0) return true;
  if (workerArch === undefined || workerArch === '') return false;
  const w = normalizeArch(workerArch);
  for (const a of allowed) if (normalizeArch(a) === w) return true;
  return false;
}
