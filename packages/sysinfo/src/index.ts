export { cpuCount, cpuPercent, CpuSampler, readCpuTimes, memory, disk, diskSync, gpus, arch, os, osName, hostname, kernel, procStat, processStartTime, isSameProcessAlive, bootId, CLOCK_TICKS } from './host.ts';
export type { MemoryInfo, DiskInfo } from './host.ts';
export { Cgroup, cgroupInfo, cgroupInfoFromMounts, processCgroups } from './cgroup.ts';
export type { CgroupInfo, CgroupRef, CgroupVersion, CgroupCreateOptions, V1Controller } from './cgroup.ts';
export { parseProcStat, cpuPercentBetween, parseMeminfo, parseFlatKeyed, parseMax, parseCpuMax, cpuQuotaFor, parseProcPidStat, parseCgroupMounts, parseProcCgroup } from './parse.ts';
export type { CpuTimes, ProcPidStat, CgroupMount } from './parse.ts';
export { unixSocketAnswers } from './sockets.ts';
export { detectGpus, parseNvidiaSmi, parseNvidiaProcInformation, NVIDIA_SMI_ARGS, MAX_GPUS, MAX_GPU_NAME } from './gpu.ts';
export type { GpuDevice, GpuDetectOptions } from './gpu.ts';
