/**
 * What this worker tells the cluster about the machine: static facts for the registration and
 * the readings of every `information` report (from @oak/sysinfo).
 */
import { arch, cpuCount, CpuSampler, detectGpus, disk, memory, osName } from '@oak/sysinfo';
import type { GpuDevice, NodeInformation, NodeRegistration, Virtualization } from '@oak/contracts';

/** how the NodeEngine finds its GPUs (tests inject fixtures; the default runs nvidia-smi) */
export type GpuReader = () => Promise<GpuDevice[]>;

/** GPU readings at most this often: nvidia-smi costs tens of ms, reports come every 2 s */
export const GPU_REFRESH_MS = 60_000;

/**
 * the most bytes the GPU list may take in a registration (the cluster takes 16 KiB bodies); the
 * `gpus` count stays exact, and the reports carry the whole list
 */
export const REGISTRATION_GPU_BYTES = 8 * 1024;

/** The first GPUs of `list` whose JSON fits in `budget` bytes. */
export function gpusWithin(list: readonly GpuDevice[], budget = REGISTRATION_GPU_BYTES): GpuDevice[] {
  const out: GpuDevice[] = [];
  let used = 2;
  for (const g of list) {
    const n = Buffer.byteLength(JSON.stringify(g)) + 1;
    if (used + n > budget) break;
    used += n;
    out.push({ ...g });
  }
  return out;
}

/** Caches the GPU list: read at start, then again at most every GPU_REFRESH_MS. */
export class GpuInventory {
  readonly #read: GpuReader;
  #list: GpuDevice[] = [];
  #at = -Infinity;
  #pending: Promise<GpuDevice[]> | undefined;
  constructor(read: GpuReader = () => detectGpus()) {
    this.#read = read;
  }

  /** the last list read (empty before the first read) */
  get current(): readonly GpuDevice[] {
    return this.#list;
  }

  async refresh(force = false, now = Date.now()): Promise<GpuDevice[]> {
    if (!force && now - this.#at < GPU_REFRESH_MS) return this.#list;
    this.#pending ??= this.#read()
      .catch(() => [] as GpuDevice[])
      .then((l) => {
        this.#list = l;
        this.#at = now;
        return l;
      })
      .finally(() => {
        this.#pending = undefined;
      });
    return this.#pending;
  }
}

export interface RegistrationInput {
  id?: string | undefined;
  name: string;
  host: string;
  virtualizations: Virtualization[];
  netmanagerPort: number | null;
  location?: string | undefined;
  dataDir: string;
  /** the worker's GPUs, as detected (none: []) */
  gpus?: readonly GpuDevice[] | undefined;
  /** addon labels the worker offers (`--addons`) */
  addons?: readonly string[] | undefined;
}

export async function registrationBody(i: RegistrationInput): Promise<NodeRegistration> {
  const mem = memory();
  let diskMb = 0;
  try {
    diskMb = (await disk(i.dataDir)).total_mb;
  } catch {
    /* data dir on an odd file system: leave 0 */
  }
  const body: NodeRegistration = {
    node_name: i.name,
    host: i.host,
    cpu_cores: cpuCount(),
    memory_mb: mem.total_mb,
    disk_mb: diskMb,
    gpus: i.gpus?.length ?? 0,
    arch: arch(),
    os: osName(),
    virtualizations: [...i.virtualizations],
    netmanager_port: i.netmanagerPort,
    location: i.location ?? null,
  };
  if (i.gpus !== undefined && i.gpus.length > 0) body.gpu_devices = gpusWithin(i.gpus);
  if (i.id !== undefined) body.id = i.id;
  if (i.addons !== undefined && i.addons.length > 0) body.supported_addons = [...i.addons];
  return body;
}

/** Takes the machine readings for `nodes/{id}/information`; cpu % covers the time since the last call. */
export class HostSampler {
  readonly #cpu = new CpuSampler();
  readonly #dataDir: string;
  readonly gpus: GpuInventory;
  constructor(dataDir: string, gpus: GpuInventory = new GpuInventory()) {
    this.#dataDir = dataDir;
    this.gpus = gpus;
  }

  async information(virtualizations: Virtualization[], running: string[]): Promise<NodeInformation> {
    const mem = memory();
    let diskFree = 0;
    try {
      diskFree = (await disk(this.#dataDir)).free_mb;
    } catch {
      /* leave 0 */
    }
    const gpus = await this.gpus.refresh();
    const info: NodeInformation = {
      cpu_percent: Math.round(this.#cpu.percent() * 10) / 10,
      cpu_cores: cpuCount(),
      memory_free_mb: mem.free_mb,
      memory_total_mb: mem.total_mb,
      disk_free_mb: diskFree,
      gpus: gpus.length,
      virtualizations: [...virtualizations],
      running_instances: running,
      timestamp: Date.now(),
    };
    if (gpus.length > 0) info.gpu_devices = gpus.map((g) => ({ ...g }));
    return info;
  }
}
