export { startNetManager, cleanNetManager } from './netmanager.ts';
export type { NetManagerOptions, NetManagerHandle } from './netmanager.ts';
export { parseCli, usage, fallbackBrokerUrl, ConfigError, DEFAULT_API_PORT, DEFAULT_PUBLIC_PORT, DEFAULT_CLUSTER_MQTT_PORT } from './config.ts';
export type { NetManagerSettings } from './config.ts';
export { NetCore, gatewayOf, gatewayOf6 } from './core.ts';
export type { Effect, CoreOptions } from './core.ts';
export { keyPathOf, MAX_API_BODY } from './api.ts';
export type { DatapathFactory, DatapathOptions, DatapathPort, DatapathService, ResolverFactory, ResolverOptions, ResolverPort } from './ports.ts';
