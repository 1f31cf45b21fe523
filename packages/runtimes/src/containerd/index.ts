export { ContainerdRuntime, containerIdFor } from './runtime.ts';
export type { ContainerdRuntimeOptions } from './runtime.ts';
export { buildSpec, mergeEnv, processArgs, DEFAULT_CAPS, ALL_CAPS, capsFromMask } from './spec.ts';
export type { ImageConfig, SpecInput, BindMount } from './spec.ts';
export { normalizeRef, isPlainHttp, chainId } from './image.ts';
