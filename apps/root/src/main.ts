/**
 * oak-root: the root orchestrator. Every setting has a flag and an environment variable
 * (SPEC §1); flags win. SIGTERM/SIGINT close the server, the control plane and the store.
 */
import { parseArgs } from 'node:util';
import { OakError } from '@oak/contracts';
import { linkControl } from './link/index.ts';
import { leadFromLink } from './lead/index.ts';
import { checkExtraServiceRanges } from './overlay.ts';
import { DEFAULT_ROOT_PORT, defaultDataDir, startRoot, type RootConfig } from './server.ts';

interface Setting {
  flag: string;
  env: string;
  help: string;
  def: () => string | undefined;
  short?: string;
  secret?: boolean;
}

const SETTINGS: Setting[] = [
  { flag: 'port', short: 'p', env: 'OAK_ROOT_PORT', help: 'REST API port', def: () => String(DEFAULT_ROOT_PORT) },
  { flag: 'host', env: 'OAK_ROOT_HOST', help: 'address to listen on', def: () => '0.0.0.0' },
  { flag: 'data-dir', env: 'OAK_DATA_DIR', help: 'directory of the embedded SQLite database (oak.db)', def: () => defaultDataDir({ ...process.env, OAK_DATA_DIR: '' }) },
  { flag: 'database-url', env: 'DATABASE_URL', help: 'postgres://... to use PostgreSQL instead of SQLite', def: () => undefined },
  { flag: 'admin-password', env: 'OAK_ADMIN_PASSWORD', help: 'password of user Admin on first start (else generated and printed once)', def: () => undefined, secret: true },
  { flag: 'link-port', env: 'OAK_ROOT_LINK_PORT', help: 'port clusters dial (gRPC link)', def: () => '50052' },
  { flag: 'audit-max-rows', env: 'OAK_AUDIT_MAX_ROWS', help: 'most audit entries kept (oldest go first)', def: () => '100000' },
  { flag: 'audit-max-age-days', env: 'OAK_AUDIT_MAX_AGE_DAYS', help: 'audit entries older than this are deleted', def: () => '90' },
  { flag: 'tls', env: 'OAK_TLS', help: "'auto': also serve the API over HTTPS with a certificate from the root CA", def: () => undefined },
  { flag: 'tls-cert', env: 'OAK_TLS_CERT', help: 'PEM certificate (chain) for the HTTPS API', def: () => undefined },
  { flag: 'tls-key', env: 'OAK_TLS_KEY', help: 'PEM private key for the HTTPS API', def: () => undefined },
  { flag: 'tls-san', env: 'OAK_TLS_SAN', help: 'extra names/addresses in the --tls auto certificate (comma separated)', def: () => undefined },
  { flag: 'https-port', env: 'OAK_HTTPS_PORT', help: 'HTTPS API port (with --tls or --tls-cert)', def: () => '10443' },
  { flag: 'log-level', env: 'OAK_LOG_LEVEL', help: 'fatal | error | warn | info | debug | trace', def: () => 'info' },
  { flag: 'lost-after', env: 'OAK_LOST_AFTER_S', help: "seconds a cluster may stay away before its instances are lost (the SLA's disconnect.lost_after_s wins)", def: () => '30' },
  { flag: 'scheduled-deadline', env: 'OAK_SCHEDULED_DEADLINE_S', help: 'seconds an instance may stay CLUSTER_SCHEDULED before it is placed again', def: () => '30' },
  { flag: 'node-scheduled-deadline', env: 'OAK_NODE_SCHEDULED_DEADLINE_S', help: 'seconds an instance may stay NODE_SCHEDULED before it is placed again', def: () => '60' },
  { flag: 'creating-deadline', env: 'OAK_CREATING_DEADLINE_S', help: 'seconds an instance may stay CREATING before it is placed again', def: () => '600' },
  { flag: 'advertise-link', env: 'OAK_ADVERTISE_LINK', help: 'host:port clusters dial to reach this root when it leads (several roots on one PostgreSQL)', def: () => undefined },
  { flag: 'self-registration', env: 'OAK_SELF_REGISTRATION', help: "organisation (name or id) that users registering themselves (Oakestra's POST /api/auth/register without a token) join; unset: off", def: () => undefined },
  { flag: 'extra-service-ranges', env: 'OAK_EXTRA_SERVICE_RANGES', help: 'IPv4 CIDRs (comma separated, at most 15) besides 10.30.0.0/16 where a requested rr_ip is honoured; workers route them too', def: () => undefined },
  { flag: 'resync', env: 'OAK_RESYNC_MS', help: 'every service is reconciled this often (ms), besides on every change', def: () => '5000' },
];

export function usage(): string {
  const rows = SETTINGS.map((s) => {
    const left = `  ${s.short ? `-${s.short}, ` : '    '}--${s.flag} <value>`;
    const d = s.def();
    return `${left.padEnd(34)}${s.help}\n${''.padEnd(34)}env ${s.env}${d !== undefined && !s.secret ? `, default ${d}` : ''}`;
  });
  return ['Usage: oak-root [options]', '', 'Root orchestrator of oak (Oakestra-compatible API on /api, docs on /api/docs).', '', 'Options:', ...rows, '  -h, --help                      show this help', ''].join('\n');
}

/** What oak-root prints once its link listens: how clusters and workers join. */
export function joinBanner(linkPort: number, caHash: string): string {
  return [
    `oak-root: clusters dial port ${linkPort} (TLS, root CA sha256 ${caHash})`,
    '  add a cluster:   oak token create cluster --name <name>   (as Admin or Infrastructure_Provider), then',
    `                   OAK_JOIN_TOKEN=<token> SYSTEM_MANAGER_URL=<this host>:${linkPort} CLUSTER_NAME=<name> oak-cluster`,
    '  add a worker:    oak token create worker --cluster <name>, then',
    '                   NodeEngine -a <cluster host> -p 10100 -t <token>',
    '',
  ].join('\n');
}

export function configFromArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): RootConfig | 'help' {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const s of SETTINGS) options[s.flag] = s.short ? { type: 'string', short: s.short } : { type: 'string' };
  const { values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false });
  if (values.help === true) return 'help';
  const get = (flag: string): string | undefined => {
    const s = SETTINGS.find((x) => x.flag === flag);
    const v = values[flag];
    if (typeof v === 'string') return v;
    const e = s ? env[s.env] : undefined;
    return e !== undefined && e !== '' ? e : undefined;
  };
  const portText = get('port') ?? String(DEFAULT_ROOT_PORT);
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be a port number, not ${JSON.stringify(portText)}`);
  const cfg: RootConfig = { port, host: get('host') ?? '0.0.0.0', logLevel: get('log-level') ?? 'info' };
  const dataDir = get('data-dir');
  if (dataDir !== undefined) cfg.dataDir = dataDir;
  const db = get('database-url');
  if (db !== undefined) cfg.databaseUrl = db;
  const linkText = get('link-port') ?? '50052';
  const linkPort = Number(linkText);
  if (!Number.isInteger(linkPort) || linkPort < 0 || linkPort > 65535) throw new Error(`--link-port must be a port number, not ${JSON.stringify(linkText)}`);
  if (env.OAK_CLUSTER_TOKEN !== undefined && env.OAK_CLUSTER_TOKEN !== '') {
    process.stderr.write('oak-root: OAK_CLUSTER_TOKEN is no longer used: clusters join with their own join token (oak token create cluster --name <name>)\n');
  }
  const num = (flag: string, min: number, max: number): number | undefined => {
    const text = get(flag);
    if (text === undefined) return undefined;
    const v = Number(text);
    if (!/^[0-9]{1,9}(\.[0-9]{1,3})?$/.test(text) || v < min || v > max) throw new Error(`--${flag} must be a number from ${min} to ${max}, not ${JSON.stringify(text.slice(0, 40))}`);
    return v;
  };
  const lostAfter = num('lost-after', 1, 86_400);
  const deadlines: { CLUSTER_SCHEDULED?: number; NODE_SCHEDULED?: number; CREATING?: number } = {};
  for (const [flag, key] of [['scheduled-deadline', 'CLUSTER_SCHEDULED'], ['node-scheduled-deadline', 'NODE_SCHEDULED'], ['creating-deadline', 'CREATING']] as const) {
    const v = num(flag, 1, 86_400);
    if (v !== undefined) deadlines[key] = v * 1000;
  }
  const resync = num('resync', 100, 3_600_000);
  const selfOrg = get('self-registration');
  if (selfOrg !== undefined) {
    if (!/^[A-Za-z0-9_.-]{1,128}$/.test(selfOrg)) throw new Error(`--self-registration takes an organisation name or id, not ${JSON.stringify(selfOrg.slice(0, 40))}`);
    cfg.selfRegistration = selfOrg;
  }
  const ranges = get('extra-service-ranges');
  if (ranges !== undefined) {
    if (ranges.length > 1000) throw new Error('--extra-service-ranges is longer than 1000 characters');
    const list = ranges.split(',').map((r) => r.trim()).filter((r) => r !== '');
    try {
      cfg.extraServiceRanges = checkExtraServiceRanges(list);
    } catch (e) {
      throw new Error(`--extra-service-ranges: ${(e as Error).message.replace(/^extra service ranges: /, '')}`);
    }
  }
  if (db !== undefined) {
    // several roots may share this database: the one holding the lease leads (lead/)
    const advertiseLink = get('advertise-link');
    cfg.lead = leadFromLink({ host: cfg.host ?? '0.0.0.0', linkPort, ...(advertiseLink !== undefined ? { advertiseLink } : {}) });
  }
  cfg.control = linkControl({
    host: cfg.host ?? '0.0.0.0',
    port: linkPort,
    ...(lostAfter !== undefined ? { graceMs: lostAfter * 1000 } : {}),
    ...(resync !== undefined ? { retryMs: resync } : {}),
    ...(Object.keys(deadlines).length > 0 ? { reconcile: { deadlines } } : {}),
    onListening: ({ port: p, caHash }) => process.stderr.write(joinBanner(p, caHash)),
  });
  const audit: { maxRows?: number; maxAgeDays?: number } = {};
  for (const [flag, key] of [['audit-max-rows', 'maxRows'], ['audit-max-age-days', 'maxAgeDays']] as const) {
    const text = get(flag);
    if (text === undefined) continue;
    if (!/^[0-9]{1,9}$/.test(text) || Number(text) < 1) throw new Error(`--${flag} must be a whole number of at least 1, not ${JSON.stringify(text)}`);
    audit[key] = Number(text);
  }
  if (Object.keys(audit).length > 0) cfg.app = { ...cfg.app, audit };
  const tlsMode = get('tls');
  const certFile = get('tls-cert');
  const keyFile = get('tls-key');
  if (tlsMode !== undefined && tlsMode !== 'auto') throw new Error(`--tls takes 'auto', not ${JSON.stringify(tlsMode)} (or give --tls-cert and --tls-key)`);
  if ((certFile === undefined) !== (keyFile === undefined)) throw new Error('--tls-cert and --tls-key go together');
  if (tlsMode === 'auto' && certFile !== undefined) throw new Error('--tls auto and --tls-cert exclude each other');
  if (certFile !== undefined && keyFile !== undefined) cfg.tls = { mode: 'files', certFile, keyFile };
  else if (tlsMode === 'auto') {
    const sans = (get('tls-san') ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '');
    cfg.tls = { mode: 'auto', sans };
  }
  if (cfg.tls) {
    const hp = Number(get('https-port') ?? '10443');
    if (!Number.isInteger(hp) || hp < 0 || hp > 65535) throw new Error(`--https-port must be a port number, not ${JSON.stringify(get('https-port'))}`);
    cfg.httpsPort = hp;
  }
  const pw = get('admin-password');
  if (pw !== undefined) cfg.adminPassword = pw;
  return cfg;
}

async function main(): Promise<void> {
  let cfg: RootConfig | 'help';
  try {
    cfg = configFromArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`oak-root: ${err instanceof Error ? err.message : String(err)}\n\n${usage()}`);
    process.exit(2);
  }
  if (cfg === 'help') {
    process.stdout.write(usage());
    return;
  }
  const root = await startRoot(cfg);
  if (root.httpsUrl !== undefined) {
    const caHash = (await root.ctx.trust)?.caHash ?? '?';
    process.stderr.write(`oak-root: HTTPS API on port ${root.httpsPort} (root CA sha256 ${caHash}); \`oak login --root https://<this host>:${root.httpsPort}\` pins it at the first login (or give --ca-file)\n`);
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    root.app.log.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    root.close().then(
      () => process.exit(0),
      (err: unknown) => {
        root.app.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

if (process.argv[1] !== undefined && /oak-root(\.mjs)?$|main\.ts$/.test(process.argv[1])) {
  main().catch((err: unknown) => {
    // our own errors (e.g. a too short OAK_ADMIN_PASSWORD) are for people: message and hint, no stack
    const text = err instanceof OakError ? `${err.message}${err.hint !== undefined ? `\n  hint: ${err.hint}` : ''}` : err instanceof Error ? (err.stack ?? err.message) : String(err);
    process.stderr.write(`oak-root: ${text}\n`);
    process.exit(1);
  });
}
