/**
 * startRoot: store + first-start bootstrap + control plane + HTTP API, listening. The one entry
 * point used by the oak-root binary, by oakd (1-DOC) and by the end-to-end tests.
 */
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { pino, type DestinationStream } from 'pino';
import { createStore, type Store } from '@oak/store';
import { buildRootApp, type RootAppOptions } from './app.ts';
import { bootstrapAdmin, jwtSecret, type BootstrapResult } from './bootstrap.ts';
import { DEFAULT_ACCESS_TTL_SEC, DEFAULT_REFRESH_TTL_SEC, type RootContext } from './context.ts';
import { noControlPlane, type ControlPlane } from './control.ts';
import { EventHub } from './events.ts';
import { loadRootTrust } from './trust.ts';
import { LOG_REDACT } from './redact.ts';
import { overlayFor } from './overlay.ts';
import { DEFAULT_HTTPS_PORT, startHttps, type HttpsListener, type RootTlsConfig } from './https.ts';
import { prepareLeadership, type LeadConfig, type Leadership } from './lead/index.ts';

export const DEFAULT_ROOT_PORT = 10000;

export interface RootConfig {
  /** the organisation self-registered users join (POST /api/auth/register without a token); undefined: off */
  selfRegistration?: string | undefined;
  /**
   * IPv4 CIDRs besides 10.30.0.0/16 in which a requested rr_ip is honoured (Oakestra SLAs ask for
   * e.g. 192.168.178.4); the workers trap and translate them too (docs/operations.md)
   */
  extraServiceRanges?: readonly string[] | undefined;
  /** default 0.0.0.0 */
  host?: string;
  /** default 10000; 0 picks a free port */
  port?: number;
  /** postgres://... to use PostgreSQL instead of the SQLite file in dataDir */
  databaseUrl?: string;
  /** PostgreSQL schema (tests) */
  pgSchema?: string;
  /** where the SQLite file (oak.db) lives; default OAK_DATA_DIR, else ~/.local/share/oak (/var/lib/oak as root) */
  dataDir?: string;
  /** password of the Admin created on first start; generated and printed once when absent */
  adminPassword?: string;
  /** pino level (default info) */
  logLevel?: string;
  /** a ready logger instead of one made from logLevel (give it `redact: LOG_REDACT` from redact.ts) */
  logger?: FastifyBaseLogger;
  accessTtlSec?: number;
  refreshTtlSec?: number;
  /** a store owned by the caller (not closed by close()); otherwise one is created */
  store?: Store;
  events?: EventHub;
  /** builds what places instances; without it instances stay REQUESTED */
  control?: (ctx: RootContext) => ControlPlane | Promise<ControlPlane>;
  /** where the generated Admin password is announced (default: stderr) */
  announce?: (text: string) => void;
  /** HTTPS for the API on httpsPort as well as HTTP on port (docs/security.md) */
  tls?: RootTlsConfig;
  /** default 10443; 0 picks a free port */
  httpsPort?: number;
  app?: RootAppOptions;
  /**
   * Several roots on one PostgreSQL (lead/, docs/operations.md): what this root advertises and
   * where it redirects clusters while it follows. Only used on PostgreSQL; on SQLite the root
   * always leads.
   */
  lead?: LeadConfig;
}

export interface RootHandle {
  /** http://host:port of the API (127.0.0.1 when listening on every address) */
  url: string;
  port: number;
  /** https://host:port of the API when TLS is configured */
  httpsUrl?: string;
  httpsPort?: number;
  app: FastifyInstance;
  ctx: RootContext;
  bootstrap: BootstrapResult;
  /** on PostgreSQL: the lease and this root's role (undefined on SQLite: it always leads) */
  lead?: Leadership;
  close(): Promise<void>;
}

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.OAK_DATA_DIR) return env.OAK_DATA_DIR;
  if (typeof process.getuid === 'function' && process.getuid() === 0) return '/var/lib/oak';
  return join(env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'oak');
}

export function passwordBanner(user: string, org: string, password: string): string {
  const line = '='.repeat(72);
  return [
    line,
    `  oak root: first start, created user ${user} (role Admin) in organisation ${org}`,
    `  generated password: ${password}`,
    '  It is shown only this once and only its hash is stored. Set OAK_ADMIN_PASSWORD',
    `  before the first start to choose it; change it with PUT /api/user/${user}/password.`,
    line,
    '',
  ].join('\n');
}

/** The root's pino logger: passwords, tokens, environment values and secrets are redacted (redact.ts). */
export function rootLogger(level = 'info', destination?: DestinationStream): FastifyBaseLogger {
  const opts = { level, base: { component: 'root' }, redact: LOG_REDACT };
  return destination === undefined ? pino(opts) : pino(opts, destination);
}

export async function startRoot(config: RootConfig = {}): Promise<RootHandle> {
  const log = config.logger ?? rootLogger(config.logLevel ?? 'info');
  const ownStore = config.store === undefined;
  let store: Store;
  // the root CA: in <data dir>/tls next to the SQLite file; in the store when it is shared (PostgreSQL, a given store)
  let caDir: string | undefined;
  if (config.store) store = config.store;
  else if (config.databaseUrl) store = await createStore({ databaseUrl: config.databaseUrl, ...(config.pgSchema ? { pgSchema: config.pgSchema } : {}) });
  else {
    const dir = config.dataDir ?? defaultDataDir();
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // the database holds the JWT secret: no workload (nor any other user) may read the dir
    if (statSync(dir).uid === process.getuid?.()) chmodSync(dir, 0o700);
    store = await createStore({ sqlitePath: join(dir, 'oak.db') });
    caDir = join(dir, 'tls');
  }
  let app: FastifyInstance | undefined;
  let control: ControlPlane = noControlPlane;
  let lead: Leadership | undefined;
  try {
    const bootstrap = await bootstrapAdmin(store, config.adminPassword);
    if (bootstrap.generatedPassword !== undefined) {
      (config.announce ?? ((t: string) => process.stderr.write(t)))(passwordBanner(bootstrap.admin.name, bootstrap.organization.name, bootstrap.generatedPassword));
    } else if (bootstrap.created) {
      log.info({ user: bootstrap.admin.name }, 'created the Admin user with the password from OAK_ADMIN_PASSWORD');
    }
    // the overlay of this store, with the operator's ranges (before the API or the link use it)
    overlayFor(store, config.extraServiceRanges ?? []);
    const trustLoad = loadRootTrust(store, caDir !== undefined ? { caDir } : {});
    const ctx: RootContext = {
      store,
      events: config.events ?? new EventHub(),
      control,
      auth: {
        jwtSecret: await jwtSecret(store),
        accessTtlSec: config.accessTtlSec ?? DEFAULT_ACCESS_TTL_SEC,
        refreshTtlSec: config.refreshTtlSec ?? DEFAULT_REFRESH_TTL_SEC,
      },
      startedAt: Date.now(),
      trust: trustLoad,
      selfRegistration: config.selfRegistration,
    };
    const trust = await trustLoad;
    log.info({ ca_sha256: trust.caHash, ca: caDir ?? 'store setting root_ca' }, 'root CA');
    // on PostgreSQL several roots may share the store: the control plane runs on the lease holder only
    const shared = store.kind === 'postgres';
    if (config.control && !shared) ctx.control = control = await config.control(ctx);
    // before the API listens: its calls go to the relay until the first lease answer
    const prepared = shared ? prepareLeadership({ ctx, store, log, ...(config.control ? { control: config.control } : {}), ...(config.lead ? { config: config.lead } : {}) }) : undefined;
    app = await buildRootApp(ctx, { loggerInstance: log, ...config.app });
    await app.listen({ host: config.host ?? '0.0.0.0', port: config.port ?? DEFAULT_ROOT_PORT });
    const addr = app.server.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address === '::' ? '::1' : addr.address}]` : addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address;
    const url = `http://${host}:${addr.port}`;
    let httpsListener: HttpsListener | undefined;
    if (config.tls) {
      httpsListener = await startHttps(app, { host: config.host ?? '0.0.0.0', port: config.httpsPort ?? DEFAULT_HTTPS_PORT, tls: config.tls, trust });
      log.info({ url: httpsListener.url, certificate: config.tls.mode === 'auto' ? 'issued by the root CA' : config.tls.certFile }, 'root API over HTTPS');
    }
    log.info({ url, store: store.kind }, 'root orchestrator listening');
    if (prepared) lead = await prepared.start(httpsListener?.url ?? url);
    const leadership = lead;
    const started = app;
    const secure = httpsListener;
    let closing: Promise<void> | undefined;
    return {
      url,
      port: addr.port,
      app: started,
      ctx,
      bootstrap,
      ...(leadership ? { lead: leadership } : {}),
      ...(secure ? { httpsUrl: secure.url, httpsPort: secure.port } : {}),
      close: () =>
        (closing ??= (async () => {
          await secure?.close();
          await started.close();
          await leadership?.close();
          await control.close?.();
          if (ownStore) await store.close();
        })()),
    };
  } catch (err) {
    await app?.close().catch(() => undefined);
    await lead?.close().catch(() => undefined);
    await control.close?.().catch(() => undefined);
    if (ownStore) await store.close().catch(() => undefined);
    throw err;
  }
}
