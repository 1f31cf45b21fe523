/**
 * What this worker tells the cluster about the machine: static facts for the registration and
 * the readings of every `information` report (from @oak/sysinfo).
 */
import { arch, cpuCount, CpuSampler, disk, gpus, memory, osName } from '@oak/sysinfo';
import type { NodeInformation, NodeRegistration, Virtualization } from '@oak/contracts';

export interface RegistrationInput {
  id?: string | undefined;
  name: string;
  host: string;
  virtualizations: Virtualization[];
  netmanagerPort: number | null;
  location?: string | undefined;
  dataDir: string;
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
    gpus: gpus(),
    arch: arch(),
    os: osName(),
    virtualizations: [...i.virtualizations],
    netmanager_port: i.netmanagerPort,
    location: i.location ?? null,
  };
  if (i.id !== undefined) body.id = i.id;
  return body;
}

/** Takes the machine readings for `nodes/{id}/information`; cpu % covers the time since the last call. */
export class HostSampler {
  readonly #cpu = new CpuSampler();
  readonly #dataDir: string;
  constructor(dataDir: string) {
    this.#dataDir = dataDir;
  }

  async information(virtualizations: Virtualization[], running: string[]): Promise<NodeInformation> {
    const mem = memory();
    let diskFree = 0;
    try {
      diskFree = (await disk(this.#dataDir)).free_mb;
    } catch {
      /* leave 0 */
    }
    return {
      cpu_percent: Math.round(this.#cpu.percent() * 10) / 10,
      cpu_cores: cpuCount(),
      memory_free_mb: mem.free_mb,
      memory_total_mb: mem.total_mb,
      disk_free_mb: diskFree,
      gpus: gpus(),
      virtualizations: [...virtualizations],
      running_instances: running,
      timestamp: Date.now(),
    };
  }
}
