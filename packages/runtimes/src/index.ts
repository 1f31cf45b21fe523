export * from './types.ts';
export * from './supervisor/index.ts';
export * from './process/index.ts';
export * from './containerd/index.ts';
export * from './wasm/index.ts';
