/**
 * Wire form of the root <-> cluster link: a gRPC bidirectional stream on LINK_SERVICE_PATH whose
 * messages are JSON documents (the TypeBox schemas of @oak/contracts, validated on arrival; no
 * .proto). Undecodable bytes become a marker that fails validation instead of breaking the call.
 */
import type { ServiceDefinition } from '@grpc/grpc-js';
import { LINK_CONNECT_METHOD, LINK_MALFORMED, MAX_CLUSTER_MESSAGE_BYTES, MAX_LINK_MESSAGE_BYTES, decodeLinkMessage, encodeLinkMessage } from '@oak/contracts';

export const MALFORMED = LINK_MALFORMED;
export const encodeMessage = encodeLinkMessage;
export const decodeMessage = decodeLinkMessage;

export const linkServiceDefinition: ServiceDefinition = { Connect: LINK_CONNECT_METHOD };

/**
 * The largest message the root reads from a cluster (any stream, before or after hello); gRPC
 * refuses a larger one from its length prefix without buffering it (RESOURCE_EXHAUSTED).
 */
export const LINK_MAX_RECEIVE_BYTES = MAX_CLUSTER_MESSAGE_BYTES;

export const LINK_SERVER_OPTIONS = {
  'grpc.max_receive_message_length': LINK_MAX_RECEIVE_BYTES,
  /** one stream per cluster connection; a few more for a reconnect racing the old stream */
  'grpc.max_concurrent_streams': 4,
  'grpc.max_send_message_length': MAX_LINK_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
} as const;

/** Minimal logger (pino fits it). */
export interface LinkLog {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const noop = (): void => {};
export const silentLinkLog: LinkLog = { debug: noop, info: noop, warn: noop, error: noop };
