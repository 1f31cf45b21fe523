export { SupervisedRuntime } from './supervisor.ts';
export type { SupervisorOptions } from './supervisor.ts';
export type { Launch, LaunchContext, Launcher, RunAs } from './launcher.ts';
export { interpretExit, signalName } from './verdict.ts';
export type { ExitVerdict, RawExit } from './verdict.ts';
export { WRAPPER_SCRIPT, wrapperArgs } from './wrapper.ts';
export { keepLogFile, readLines } from './logs.ts';
