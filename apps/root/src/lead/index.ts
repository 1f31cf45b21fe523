/**
 * Several roots on one PostgreSQL (docs/operations.md): every root serves the API; the one that
 * holds the lease `reconciler` runs the control plane (whatever `config.control` builds: the
 * cluster link and the reconciler). `startLeadership` is what startRoot runs on PostgreSQL:
 *
 * - the lease loop (leader.ts) decides the role;
 * - leading: the control plane is started and is `ctx.control`; relayed changes of the followers
 *   ('oak_reconcile') are applied to it; stepping down closes it (ctx.control switches to the
 *   relay first, so nothing new reaches it);
 * - following: `ctx.control` is the relay (relay.ts); a redirect listener on the link port (when
 *   configured) sends clusters to the leader's link;
 * - always: events cross roots through 'oak_events' (events-bridge.ts).
 *
 * Role changes are applied one at a time, in order; a change that comes while one is applied is
 * applied after it (the last one wins).
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { OakError } from '@oak/contracts';
import type { JoinTokenRow, Store } from '@oak/store';
import type { RootContext } from '../context.ts';
import type { ControlPlane } from '../control.ts';
import { rootTrust } from '../trust.ts';
import type { LeaderInfo, Role } from './decide.ts';
import { EventBridge } from './events-bridge.ts';
import { startLeaseLoop, type LeaseLog, type LeaseLoop } from './leader.ts';
import { startRedirectLink, type RedirectLink } from './redirect-link.ts';
import { listenRelayed, relayControl, type RelayControlPlane } from './relay.ts';

export { LeaseDecider, parseLeaderInfo } from './decide.ts';
export type { LeaderInfo, Role, Transition, LeaseOutcome } from './decide.ts';
export { startLeaseLoop, RECONCILER_LEASE, DEFAULT_LEASE_TTL_MS, DEFAULT_LEASE_RENEW_MS } from './leader.ts';
export { EventBridge, EVENTS_CHANNEL, parseEventPayload } from './events-bridge.ts';
export { relayControl, listenRelayed, parseRelayMessage, RECONCILE_CHANNEL } from './relay.ts';
export { startRedirectLink, isLinkAddress } from './redirect-link.ts';

/** RootConfig.lead: how this root takes part when several share one PostgreSQL. */
export interface LeadConfig {
  /** the API URL this root advertises (default: the URL it listens on) */
  apiUrl?: string;
  /** host:port clusters dial to reach this root's link when it leads (advertised to the followers) */
  linkUrl?: string;
  /** while following, listen here and redirect clusters to the leader (normally the link port) */
  redirectListen?: { host?: string; port: number };
  /** lease holder id, unique per root (default a random UUID; two roots with one id would both lead) */
  holder?: string;
  ttlMs?: number;
  renewMs?: number;
  /** a control plane that fails to start: give the lease up and stay a follower this long (default 5 s) */
  failedStartBackoffMs?: number;
}

/**
 * The LeadConfig oak-root uses on PostgreSQL: a follower redirects clusters on the link port
 * itself, and the leader advertises `advertiseLink` (OAK_ADVERTISE_LINK) or, by default,
 * <listen host or this machine's name>:<link port> as where clusters dial it.
 */
export function leadFromLink(o: { host: string; linkPort: number; advertiseLink?: string; advertiseApi?: string }): LeadConfig {
  const wildcard = o.host === '0.0.0.0' || o.host === '::' || o.host === '';
  const host = wildcard ? hostname() : o.host.includes(':') && !o.host.startsWith('[') ? `[${o.host}]` : o.host;
  return {
    linkUrl: o.advertiseLink ?? `${host}:${o.linkPort}`,
    redirectListen: { host: o.host, port: o.linkPort },
    ...(o.advertiseApi !== undefined ? { apiUrl: o.advertiseApi } : {}),
  };
}

export interface Leadership {
  readonly holder: string;
  readonly role: Role | undefined;
  /** the leader as this root sees it (itself when leading) */
  readonly leader: LeaderInfo | null;
  /** the control plane while this root leads and it is up */
  readonly control: ControlPlane | undefined;
  readonly relay: RelayControlPlane;
  readonly events: EventBridge;
  /** the follower's redirect listener while it follows (when configured) */
  readonly redirectLink: RedirectLink | undefined;
  /** resolves when the role changes told so far are applied */
  settled(): Promise<void>;
  /**
   * Stops taking part. `release: false` keeps the lease row as it is (a crash, for tests): the
   * others take over once it expires. The control plane is closed first either way.
   */
  close(opts?: { release?: boolean }): Promise<void>;
}

export interface LeadershipOptions {
  ctx: RootContext;
  store: Store;
  log: LeaseLog;
  /** builds the control plane (startRoot's config.control); none: the leader places nothing */
  control?: (ctx: RootContext) => ControlPlane | Promise<ControlPlane>;
  apiUrl: string;
  config?: LeadConfig;
}

/** startLeadership in two steps: prepare (ctx.control becomes the relay at once) and start. */
export interface PreparedLeadership {
  start(apiUrl: string): Promise<Leadership>;
}

/**
 * Sets ctx.control to the relay and the follower hooks at once (before the API listens, so that
 * no call is lost before the first lease answer); start() joins the lease loop once the API's URL
 * is known.
 */
export function prepareLeadership(o: Omit<LeadershipOptions, 'apiUrl'>): PreparedLeadership {
  let started: Promise<Leadership> | undefined;
  const body = leadershipBody(o);
  return {
    start: (apiUrl) => (started ??= body(apiUrl)),
  };
}

export async function startLeadership(o: LeadershipOptions): Promise<Leadership> {
  return prepareLeadership(o).start(o.apiUrl);
}

function leadershipBody(o: Omit<LeadershipOptions, 'apiUrl'>): (apiUrl: string) => Promise<Leadership> {
  const { ctx, store, log } = o;
  const cfg = o.config ?? {};
  const holder = cfg.holder ?? randomUUID();
  // set once the loop runs (the relay and the redirect listener ask it who leads)
  const ref: { loop?: LeaseLoop } = {};
  const leaderInfo = (): LeaderInfo | null => ref.loop?.leader ?? null;
  const relay = relayControl({ store, leader: leaderInfo, log });
  const events = new EventBridge({ store, hub: ctx.events, origin: holder, log });
  // the hooks the control plane sets on ctx (token revocation, worker removal) are its own: put
  // back what was there when it closes; while following, a revoked token is relayed
  const baseTokenRevoked = ctx.tokenRevoked;
  const baseRemoveWorkers = ctx.removeWorkers;
  const followerHooks = (): void => {
    ctx.tokenRevoked = (row: JoinTokenRow): void => {
      baseTokenRevoked?.(row);
      relay.tokenRevoked(row);
    };
    // the cluster links are the leader's: say so, naming it (as logs do)
    ctx.removeWorkers = () => {
      const api = leaderInfo()?.api_url;
      throw new OakError('OAK_UNAVAILABLE', 'this root follows: workers are removed by the leading root, which holds the cluster links', {
        hint: api !== undefined ? `ask the leading root: ${api} (same login)` : 'no root leads right now; try again in a few seconds',
      });
    };
  };
  ctx.control = relay;
  followerHooks();

  let want: Role | 'stopped' = 'follower';
  let have: Role | 'none' | 'stopped' = 'none';
  let control: ControlPlane | undefined;
  let redirect: RedirectLink | undefined;
  let leaderTokenRevoked: ((row: JoinTokenRow) => void) | undefined;
  let running: Promise<void> | undefined;

  const startRedirect = async (): Promise<void> => {
    if (!cfg.redirectListen || redirect) return;
    try {
      redirect = await startRedirectLink({
        ...(cfg.redirectListen.host !== undefined ? { host: cfg.redirectListen.host } : {}),
        port: cfg.redirectListen.port,
        store,
        trust: await rootTrust(ctx),
        target: () => leaderInfo()?.link_url,
        log,
      });
    } catch (err) {
      log.error({ err, port: cfg.redirectListen.port }, 'lead: the follower link listener could not start (clusters that dial this root are not redirected)');
    }
  };
  const stopRedirect = async (): Promise<void> => {
    const r = redirect;
    redirect = undefined;
    await r?.close();
  };
  const stopControl = async (): Promise<void> => {
    ctx.control = relay;
    const c = control;
    control = undefined;
    leaderTokenRevoked = undefined;
    if (c) {
      try {
        await c.close?.();
      } catch (err) {
        log.error({ err }, 'lead: closing the control plane failed');
      }
    }
    followerHooks();
  };

  const step = async (): Promise<void> => {
    const target = want;
    if (target === 'leader') {
      await stopRedirect();
      ctx.tokenRevoked = baseTokenRevoked;
      if (baseTokenRevoked === undefined) delete ctx.tokenRevoked;
      if (baseRemoveWorkers) ctx.removeWorkers = baseRemoveWorkers;
      else delete ctx.removeWorkers;
      let c: ControlPlane;
      try {
        c = o.control ? await o.control(ctx) : { instancesRequested() {}, instancesUndeployed() {} };
      } catch (err) {
        log.error({ err }, 'lead: the control plane failed to start; giving the lease up');
        followerHooks();
        have = 'follower';
        if (want === 'leader') want = 'follower';
        void ref.loop?.yieldFor(cfg.failedStartBackoffMs ?? 5000);
        await startRedirect();
        return;
      }
      control = c;
      leaderTokenRevoked = ctx.tokenRevoked;
      have = 'leader';
      if (want === 'leader') ctx.control = c;
      log.info({ holder }, 'lead: control plane started');
      return;
    }
    if (have === 'leader') {
      await stopControl();
      log.info({ holder }, 'lead: control plane closed');
    }
    have = target;
    if (target === 'follower') await startRedirect();
    else await stopRedirect();
  };
  const settle = (): Promise<void> => {
    if (running) return running;
    const p = (async () => {
      await null;
      while (have !== want && have !== 'stopped') {
        try {
          await step();
        } catch (err) {
          log.error({ err }, 'lead: a role change failed');
          return;
        }
      }
    })();
    running = p;
    void p.finally(() => {
      if (running === p) running = undefined;
    });
    return p;
  };

  return async (apiUrl: string): Promise<Leadership> => {
    await events.start();
    const unlisten = await listenRelayed({
      store,
      control: () => (have === 'leader' && want === 'leader' ? control : undefined),
      tokenRevoked: (row) => leaderTokenRevoked?.(row),
      log,
      stats: relay.stats,
    });

    const lp = startLeaseLoop({
      store,
      holder,
      ...(cfg.ttlMs !== undefined ? { ttlMs: cfg.ttlMs } : {}),
      ...(cfg.renewMs !== undefined ? { renewMs: cfg.renewMs } : {}),
      info: JSON.stringify({ api_url: cfg.apiUrl ?? apiUrl, ...(cfg.linkUrl !== undefined ? { link_url: cfg.linkUrl } : {}), started_at: new Date().toISOString() }),
      log,
      onLead: () => {
        if (want === 'stopped') return;
        want = 'leader';
        void settle();
      },
      onFollow: () => {
        if (want === 'stopped') return;
        want = 'follower';
        // at once: nothing new reaches the control plane that is being closed
        ctx.control = relay;
        void settle();
      },
    });
    ref.loop = lp;
    await lp.ready;
    await settle();

    let closing: Promise<void> | undefined;
    return {
      holder,
      get role() {
        return lp.role;
      },
      get leader() {
        return lp.leader;
      },
      get control() {
        return have === 'leader' ? control : undefined;
      },
      relay,
      events,
      get redirectLink() {
        return redirect;
      },
      async settled() {
        while (running) await running;
      },
      close(opts = {}) {
        closing ??= (async () => {
          await lp.stop();
          want = 'stopped';
          ctx.control = relay;
          while (running) await running;
          if (have === 'leader') await stopControl();
          have = 'stopped';
          await stopRedirect();
          if (opts.release !== false) await lp.release();
          await relay.close();
          await unlisten().catch(() => undefined);
          await events.close();
        })();
        return closing;
      },
    };
  };
}
