export { startOakd, type Oakd, type Say } from './oakd.ts';
export { parseConfig, usage, UsageError, defaultDataDir, type OakdConfig } from './config.ts';
export { ensureContainerd, SYSTEM_SOCKET, type ContainerdChoice } from './containerd.ts';
export { defaultPublicAddress, startBuiltInNetManager, type BuiltInNetManager, type BuiltInNetManagerOptions } from './netmanager.ts';
