/**
 * Wire form of the root <-> cluster link: a gRPC bidirectional stream whose messages are JSON
 * documents (no .proto: the messages are the TypeBox schemas of @oak/contracts, validated on
 * arrival). Undecodable bytes become a marker that fails validation instead of breaking the call.
 */
import { decodeJson } from '@oak/contracts';

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

/** gRPC channel options for the link: large syncs fit, no idle disconnects. */
export const LINK_CHANNEL_OPTIONS = {
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': 200,
  'grpc.max_reconnect_backoff_ms': 2_000,
} as const;
