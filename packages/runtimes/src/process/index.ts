export { ProcessLauncher, ProcessRuntime } from './runtime.ts';
export type { ProcessRuntimeOptions } from './runtime.ts';
export { DEFAULT_RUN_AS, lookupUser, createUserHint } from './user.ts';
