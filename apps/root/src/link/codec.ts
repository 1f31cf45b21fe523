/**
 * Wire form of the root <-> cluster link: a gRPC bidirectional stream on LINK_SERVICE_PATH whose
 * messages are JSON documents (the TypeBox schemas of @oak/contracts, validated on arrival; no
 * .proto). Undecodable bytes become a marker that fails validation instead of breaking the call.
 */
import type { ServiceDefinition } from '@grpc/grpc-js';
import { LINK_SERVICE_PATH, decodeJson } from '@oak/contracts';

export const MALFORMED = { type: '__malformed__' } as const;

export function encodeMessage(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v), 'utf8');
}

export function decodeMessage(b: Buffer): unknown {
  try {
    return decodeJson(b);
  } catch {
    return MALFORMED;
  }
}

export const linkServiceDefinition: ServiceDefinition = {
  Connect: {
    path: LINK_SERVICE_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: encodeMessage,
    requestDeserialize: decodeMessage,
    responseSerialize: encodeMessage,
    responseDeserialize: decodeMessage,
    originalName: 'Connect',
  },
};

export const LINK_SERVER_OPTIONS = {
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
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
