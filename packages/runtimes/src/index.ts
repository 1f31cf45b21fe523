export * from './types.ts';
export * from './process/index.ts';
export * from './containerd/index.ts';
