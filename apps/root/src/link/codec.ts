/**
 * Wire form of the root <-> cluster link: a gRPC bidirectional stream on LINK_SERVICE_PATH whose
 * messages are JSON documents (the TypeBox schemas of @oak/contracts, validated on arrival; no
 * .proto). Undecodable bytes become a marker that fails validation instead of breaking the call.
 */
import * as grpc from '@grpc/grpc-js';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { LINK_CONNECT_METHOD, LINK_MALFORMED, MAX_CLUSTER_MESSAGE_BYTES, MAX_LINK_MESSAGE_BYTES, decodeLinkMessage, encodeLinkMessage } from '@oak/contracts';
import { ROOT_SERVICE_NAME, issueIdentity } from '@oak/trust';
import type { Ca } from '@oak/trust';

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

/**
 * The link's service definition for a listener that bounds the first message: each decoded
 * message's byte size goes into `sizes` (the hello size limit of the link and of a follower).
 */
export function sizedLinkDefinition(sizes: WeakMap<object, number>): ServiceDefinition {
  return { Connect: { ...LINK_CONNECT_METHOD, requestDeserialize: sizedDecoder(sizes) } };
}

/** decodeLinkMessage that puts each message's byte size into `sizes` (the listener's deserializer, also of in-process streams) */
export function sizedDecoder(sizes: WeakMap<object, number>): (buf: Buffer) => unknown {
  return (buf) => {
    const m = decodeLinkMessage(buf);
    if (typeof m === 'object' && m !== null && m !== LINK_MALFORMED) sizes.set(m, buf.length);
    return m;
  };
}

/** TLS of a root's link listener: a fresh key and certificate at every start, from the root CA (clusters verify CA + SAN oak-root). */
export async function rootLinkCredentials(ca: Ca): Promise<grpc.ServerCredentials> {
  const identity = await issueIdentity(ca, { commonName: ROOT_SERVICE_NAME, dnsNames: [ROOT_SERVICE_NAME], days: 825 });
  return grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(identity.chainPem), private_key: Buffer.from(identity.keyPem) }], false);
}

/** the host a listener binds ([v6] bracketed) and the one it shows in its address (127.0.0.1 for a wildcard) */
export function linkHosts(host: string): { bindHost: string; shownHost: string } {
  const bindHost = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return { bindHost, shownHost: host === '0.0.0.0' || host === '::' ? '127.0.0.1' : bindHost };
}
