export { ContainerdRuntime, containerIdFor } from './runtime.ts';
export type { ContainerdRuntimeOptions } from './runtime.ts';
export { buildSpec, mergeEnv, processArgs, DEFAULT_CAPS, ALL_CAPS, capsFromMask } from './spec.ts';
export type { ImageConfig, SpecInput, BindMount } from './spec.ts';
export { normalizeRef, isPlainHttp, chainId } from './image.ts';
export { resolveGpuAccess, resolveCdi, parseCdiSpec, loadCdiSpecs, devNumbers, CDI_GPU_KIND, DEFAULT_CDI_DIRS, DEFAULT_NVIDIA_HOOKS } from './gpu.ts';
export type { GpuAccess, GpuAccessOptions, GpuRef, CdiSpec, CdiEdits, ResolvedDeviceNode } from './gpu.ts';
