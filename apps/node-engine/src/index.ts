export { startNodeEngine } from './engine.ts';
export type { NodeEngineDeps, NodeEngineHandle, NodeEngineOptions } from './engine.ts';
export { withDefaults, defaultDataDir, consoleLog, silentLog, DEFAULT_CONTAINERD_SOCKET, DEFAULT_REPORT_INTERVAL_MS } from './config.ts';
export type { NodeEngineConfig, EngineLog } from './config.ts';
export { parseFlags, helpText } from './flags.ts';
export type { FlagsResult } from './flags.ts';
export { logTopics } from './logs.ts';
export type { LogRequest, LogBatch } from './logs.ts';
