/**
 * The root's side of the cluster link. `linkControl(options)` is the factory startRoot takes as
 * `control`: it starts the link listener (port 50052 by default) with the root's store and event
 * hub and returns the control plane that places instances on the connected clusters.
 */
import { randomBytes } from 'node:crypto';
import type { Strategy } from '@oak/scheduler';
import type { Store } from '@oak/store';
import type { RootContext } from '../context.ts';
import { createLinkControlPlane } from './control.ts';
import type { LinkControlPlane } from './control.ts';
import { startLinkServer } from './server.ts';
import type { LinkLog } from './codec.ts';

export { startLinkServer, tokenMatches, DEFAULT_LINK_PORT } from './server.ts';
export type { LinkListener, LinkServer, LinkServerOptions } from './server.ts';
export { createLinkControlPlane } from './control.ts';
export type { LinkControlOptions, LinkControlPlane } from './control.ts';
export { encodeMessage, decodeMessage, linkServiceDefinition, silentLinkLog } from './codec.ts';
export type { LinkLog } from './codec.ts';

/** The store setting that holds the generated cluster token. */
export const CLUSTER_TOKEN_SETTING = 'cluster_token';

/**
 * The token clusters must present: the given one (OAK_CLUSTER_TOKEN), else the one stored on an
 * earlier start, else a new random one (stored, so that every root replica and restart agrees).
 */
export async function clusterToken(store: Store, given?: string): Promise<string> {
  if (given !== undefined && given !== '') return given;
  return store.setSettingIfAbsent(CLUSTER_TOKEN_SETTING, randomBytes(24).toString('base64url'));
}

export interface LinkControlSettings {
  /** default 0.0.0.0 */
  host?: string;
  /** default 50052 */
  port?: number;
  /** default: clusterToken(store) */
  token?: string;
  graceMs?: number;
  retryMs?: number;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  strategy?: Strategy;
  /** told the token and the address once listening (e.g. to print them) */
  onListening?: (info: { address: string; port: number; token: string }) => void;
}

/** For startRoot({ control: linkControl({...}) }). */
export function linkControl(settings: LinkControlSettings = {}): (ctx: RootContext) => Promise<LinkControlPlane> {
  return async (ctx) => {
    // ctx.log is set once the app is built (after this factory): look it up at each call
    const log: LinkLog = {
      debug: (o, m) => ctx.log?.debug(o, m),
      info: (o, m) => ctx.log?.info(o, m),
      warn: (o, m) => ctx.log?.warn(o, m),
      error: (o, m) => ctx.log?.error(o, m),
    };
    const token = await clusterToken(ctx.store, settings.token);
    const link = await startLinkServer({
      store: ctx.store,
      events: ctx.events,
      token,
      ...(settings.host !== undefined ? { host: settings.host } : {}),
      ...(settings.port !== undefined ? { port: settings.port } : {}),
      ...(settings.pingIntervalMs !== undefined ? { pingIntervalMs: settings.pingIntervalMs } : {}),
      ...(settings.pingTimeoutMs !== undefined ? { pingTimeoutMs: settings.pingTimeoutMs } : {}),
      log,
    });
    settings.onListening?.({ address: link.address, port: link.port, token });
    return createLinkControlPlane({
      link,
      store: ctx.store,
      events: ctx.events,
      ...(settings.graceMs !== undefined ? { graceMs: settings.graceMs } : {}),
      ...(settings.retryMs !== undefined ? { retryMs: settings.retryMs } : {}),
      ...(settings.strategy !== undefined ? { strategy: settings.strategy } : {}),
      log,
    });
  };
}
