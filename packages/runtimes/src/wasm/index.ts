export { WasmLauncher, WasmRuntime, RUNNER_OVERHEAD_MB, MAX_MODULE_BYTES, runnerNodeFlags } from './runtime.ts';
export type { WasmLauncherOptions, WasmRuntimeOptions } from './runtime.ts';
export { capMemory, PAGES_PER_MB } from './binary.ts';
export { RUNNER_SOURCE } from './runner.ts';
