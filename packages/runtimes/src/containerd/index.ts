export { ContainerdRuntime, containerIdFor } from './runtime.ts';
export type { ContainerdRuntimeOptions } from './runtime.ts';
export { buildSpec, mergeEnv, processArgs } from './spec.ts';
export type { ImageConfig, SpecInput } from './spec.ts';
export { normalizeRef, isPlainHttp, chainId } from './image.ts';
