export * from './types.ts';
export * from './supervisor/index.ts';
export * from './process/index.ts';
export * from './containerd/index.ts';
export * from './wasm/index.ts';
export * from './unikernel/index.ts';
export { probeQemu, qemuArgv, qemuVerdict, qemuProbeResult, QEMU } from './qemu/index.ts';
export type { QemuHost, QemuVm } from './qemu/index.ts';
