/**
 * Wire form of the root <-> cluster link: a gRPC bidirectional stream whose messages are JSON
 * documents (no .proto: the messages are the TypeBox schemas of @oak/contracts, validated on
 * arrival). Undecodable bytes become a marker that fails validation instead of breaking the call.
 */
import { LINK_MALFORMED, MAX_LINK_MESSAGE_BYTES, decodeLinkMessage, encodeLinkMessage } from '@oak/contracts';

export const MALFORMED = LINK_MALFORMED;
export const encodeMessage = encodeLinkMessage;
export const decodeMessage = decodeLinkMessage;

/** gRPC channel options for the link: large syncs fit, no idle disconnects. */
export const LINK_CHANNEL_OPTIONS = {
  'grpc.max_receive_message_length': MAX_LINK_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_LINK_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': 200,
  'grpc.max_reconnect_backoff_ms': 2_000,
} as const;
