/** Test helpers for the link: join tokens minted straight in a root's store, a raw TLS link call. */
import * as grpc from '@grpc/grpc-js';
import { LINK_SERVICE_PATH } from '@oak/contracts';
import type { Store } from '@oak/store';
import { ROOT_SERVICE_NAME } from '@oak/trust';
import type { RootContext } from '../src/context.ts';
import { decodeMessage, encodeMessage } from '../src/link/index.ts';
import { mintJoinToken, rootTrust } from '../src/trust.ts';

const minted = new WeakMap<Store, Map<string, string>>();

/** A cluster join token bound to `name` (the same one for the same store and name). */
export async function clusterJoinToken(ctx: RootContext, name: string): Promise<string> {
  let m = minted.get(ctx.store);
  if (!m) minted.set(ctx.store, (m = new Map()));
  const known = m.get(name);
  if (known !== undefined) return known;
  const { token } = await mintJoinToken(ctx.store, await rootTrust(ctx), { kind: 'cluster', name });
  m.set(name, token);
  return token;
}

/** A worker join token for `cluster`. */
export async function workerJoinToken(ctx: RootContext, cluster: string, ttlSec?: number): Promise<{ id: string; token: string }> {
  const { row, token } = await mintJoinToken(ctx.store, await rootTrust(ctx), { kind: 'worker', cluster, ...(ttlSec !== undefined ? { ttlSec } : {}) });
  return { id: row.id, token };
}

/** A bare link stream over TLS pinned to the root's CA (for tests that speak the protocol by hand). */
export async function rawLinkCall(ctx: RootContext, address: string, opts: { ownConnection?: boolean } = {}): Promise<{ client: grpc.Client; call: grpc.ClientDuplexStream<unknown, unknown> }> {
  const ca = (await rootTrust(ctx)).ca.certPem;
  const client = new grpc.Client(address, grpc.credentials.createSsl(Buffer.from(ca)), {
    'grpc.ssl_target_name_override': ROOT_SERVICE_NAME,
    'grpc.max_send_message_length': -1,
    ...(opts.ownConnection === true ? { 'grpc.use_local_subchannel_pool': 1 } : {}),
  });
  const call = client.makeBidiStreamRequest<unknown, unknown>(LINK_SERVICE_PATH, encodeMessage, decodeMessage);
  return { client, call };
}
