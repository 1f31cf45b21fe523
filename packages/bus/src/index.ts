export { startEmbeddedBroker } from './broker.ts';
export type { EmbeddedBroker, EmbeddedBrokerOptions } from './broker.ts';
export { connectBus } from './bus.ts';
export type { Bus, BusOptions, MessageHandler, QoS } from './bus.ts';
export { topicMatches, isValidFilter } from './topic.ts';
export { consoleLogger, silentLogger } from './log.ts';
export type { Logger } from './log.ts';
