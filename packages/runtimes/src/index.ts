export * from './types.ts';
export * from './process/index.ts';
