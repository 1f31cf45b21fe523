export { REGISTRATION_BODY_LIMIT, startCluster, workerPassword } from './cluster.ts';
export type { ClusterHandle } from './cluster.ts';
export { CLUSTER_VERSION, linkAddress } from './config.ts';
export type { ClusterConfig } from './config.ts';
export { ClusterCore, coreOptions } from './core.ts';
export type { CoreOptions, DesiredInstance, Effect, InstanceStatusMessage, WorkerRecord } from './core.ts';
export { LinkClient } from './link-client.ts';
export type { LinkClientHandlers, LinkClientOptions, WelcomeMessage, WorkerTokenCheck } from './link-client.ts';
export { LINK_CHANNEL_OPTIONS, decodeMessage, encodeMessage } from './link-codec.ts';
