export { ProcessRuntime } from './runtime.ts';
export type { ProcessRuntimeOptions, RunAs } from './runtime.ts';
export { interpretExit, WRAPPER_SCRIPT } from './wrapper.ts';
export type { ExitVerdict, RawExit } from './wrapper.ts';
export { DEFAULT_RUN_AS, lookupUser, createUserHint } from './user.ts';
