export { ProcessRuntime } from './runtime.ts';
export type { ProcessRuntimeOptions } from './runtime.ts';
export { interpretExit, WRAPPER_SCRIPT } from './wrapper.ts';
export type { ExitVerdict, RawExit } from './wrapper.ts';
