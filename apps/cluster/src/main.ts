/**
 * oak-cluster: the cluster orchestrator. Every setting has a flag and an environment variable
 * (flags win). SIGTERM/SIGINT close the link, the HTTP server and the broker.
 */
import { parseArgs } from 'node:util';
import { consoleLogger } from '@oak/bus';
import { ADDON_PATTERN, DEFAULT_PORTS, MAX_ADDONS } from '@oak/contracts';
import type { Strategy } from '@oak/scheduler';
import { startCluster } from './cluster.ts';
import { linkAddress } from './config.ts';
import type { ClusterConfig } from './config.ts';

interface Setting {
  flag: string;
  env: string;
  help: string;
  def?: string;
  short?: string;
  secret?: boolean;
}

const SETTINGS: Setting[] = [
  { flag: 'name', short: 'n', env: 'CLUSTER_NAME', help: 'cluster name (the root knows the cluster by it)', def: 'cluster1' },
  { flag: 'location', env: 'CLUSTER_LOCATION', help: 'free text, or lat,long[,radius] for geo scheduling' },
  { flag: 'root', short: 'r', env: 'SYSTEM_MANAGER_URL', help: 'the root: host, host:port (link port) or URL; link port 50052 unless --root-link-port' },
  { flag: 'root-link-port', env: 'OAK_ROOT_LINK_PORT', help: 'port of the root link', def: String(DEFAULT_PORTS.rootLink) },
  { flag: 'token', short: 't', env: 'OAK_JOIN_TOKEN', help: 'cluster join token (oak token create cluster --name <name> on the root)', secret: true },
  { flag: 'port', short: 'p', env: 'OAK_CLUSTER_PORT', help: 'HTTP port for worker registration', def: String(DEFAULT_PORTS.cluster) },
  { flag: 'host', env: 'OAK_CLUSTER_HOST', help: 'address to listen on', def: '0.0.0.0' },
  { flag: 'mqtt-url', env: 'MQTT_URL', help: 'an external MQTT broker (e.g. mqtt://127.0.0.1:1883) instead of the embedded one' },
  { flag: 'mqtt-public-url', env: 'OAK_MQTT_PUBLIC_URL', help: 'broker URL handed to workers when it differs from --mqtt-url' },
  { flag: 'nats-users-file', env: 'OAK_NATS_USERS_FILE', help: 'with --mqtt-url on NATS server\'s MQTT: the users file its config includes in authorization {} (the cluster rewrites it)' },
  { flag: 'nats-pid-file', env: 'OAK_NATS_PID_FILE', help: 'the NATS server\'s pid_file (SIGHUP reloads the users file); required with --nats-users-file' },
  { flag: 'nats-monitor-url', env: 'OAK_NATS_MONITOR_URL', help: 'the NATS server\'s monitoring URL (http://host:8222): version and JetStream checked, reloads confirmed' },
  { flag: 'mqtt-port', env: 'OAK_MQTT_PORT', help: 'port of the embedded broker', def: String(DEFAULT_PORTS.clusterMqtt) },
  { flag: 'report-interval', env: 'OAK_REPORT_INTERVAL_MS', help: 'how often workers report, ms', def: '2000' },
  { flag: 'dead-after', env: 'OAK_DEAD_AFTER_INTERVALS', help: 'missed reports before a worker is dead', def: '3' },
  { flag: 'addons', env: 'CLUSTER_ADDONS', help: 'addon labels this cluster offers to all its workers, for the SLA\'s addons constraints (comma list)' },
  { flag: 'strategy', env: 'OAK_WORKER_STRATEGY', help: 'worker ranking: least-loaded | best-fit | spread', def: 'least-loaded' },
];

export function usage(): string {
  const rows = SETTINGS.map((s) => {
    const left = `  ${s.short ? `-${s.short}, ` : '    '}--${s.flag} <value>`;
    return `${left.padEnd(34)}${s.help}\n${''.padEnd(34)}env ${s.env}${s.def !== undefined && !s.secret ? `, default ${s.def}` : ''}`;
  });
  return [
    'Usage: oak-cluster [options]',
    '',
    'Cluster orchestrator of oak: workers register over HTTP and talk MQTT; the cluster dials out to',
    'the root (gRPC stream) and reports an aggregate of its workers.',
    '',
    'Options:',
    ...rows,
    '  -h, --help                      show this help',
    '',
  ].join('\n');
}

function num(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be an integer in ${min}..${max}, not ${JSON.stringify(text)}`);
  return n;
}

/** `--addons a,b`: unique addon labels (the pattern of the SLA's `needs`), at most MAX_ADDONS. */
export function parseAddons(text: string): string[] {
  const list = [...new Set(text.split(',').map((x) => x.trim()).filter((x) => x !== ''))];
  const re = new RegExp(ADDON_PATTERN);
  const bad = list.find((x) => !re.test(x));
  if (bad !== undefined) throw new Error(`--addons: ${JSON.stringify(bad.slice(0, 80))} is not an addon label (a letter or digit, then up to 63 letters, digits, ".", "_" or "-")`);
  if (list.length > MAX_ADDONS) throw new Error(`--addons: ${list.length} labels; at most ${MAX_ADDONS} are allowed`);
  return list;
}

export function configFromArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): ClusterConfig | 'help' {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const s of SETTINGS) options[s.flag] = s.short ? { type: 'string', short: s.short } : { type: 'string' };
  const { values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false });
  if (values.help === true) return 'help';
  const get = (flag: string): string | undefined => {
    const s = SETTINGS.find((x) => x.flag === flag);
    const v = values[flag];
    if (typeof v === 'string') return v;
    const e = s ? env[s.env] : undefined;
    return e !== undefined && e !== '' ? e : s?.def;
  };
  const strategy = get('strategy') ?? 'least-loaded';
  if (!['least-loaded', 'best-fit', 'spread'].includes(strategy)) throw new Error(`--strategy must be least-loaded, best-fit or spread, not ${JSON.stringify(strategy)}`);
  const cfg: ClusterConfig = {
    name: get('name') ?? 'cluster1',
    location: get('location') ?? null,
    host: get('host') ?? '0.0.0.0',
    port: num('port', get('port') ?? '', 0, 65535),
    mqttPort: num('mqtt-port', get('mqtt-port') ?? '', 0, 65535),
    reportIntervalMs: num('report-interval', get('report-interval') ?? '', 50, 3_600_000),
    deadAfterIntervals: num('dead-after', get('dead-after') ?? '', 1, 1000),
    strategy: strategy as Strategy,
  };
  const addons = get('addons');
  if (addons !== undefined) cfg.addons = parseAddons(addons);
  const mqttUrl = get('mqtt-url');
  if (mqttUrl !== undefined) cfg.mqttUrl = mqttUrl;
  const natsFile = get('nats-users-file');
  const natsPid = get('nats-pid-file');
  const natsMonitor = get('nats-monitor-url');
  if (natsFile !== undefined || natsPid !== undefined || natsMonitor !== undefined) {
    if (natsFile === undefined || natsPid === undefined) throw new Error('--nats-users-file and --nats-pid-file go together (the file the NATS config includes, and the pid to reload)');
    if (mqttUrl === undefined) throw new Error('--nats-users-file needs --mqtt-url (the NATS server\'s MQTT listener, with the cluster\'s NATS user: mqtt://<user>:<password>@host:port)');
    if (natsMonitor !== undefined && !/^https?:\/\/[^\s]+$/.test(natsMonitor)) throw new Error(`--nats-monitor-url must be an http(s) URL, not ${JSON.stringify(natsMonitor)}`);
    cfg.natsAuth = { file: natsFile, pidFile: natsPid, ...(natsMonitor !== undefined ? { monitorUrl: natsMonitor } : {}) };
  }
  const pub = get('mqtt-public-url');
  if (pub !== undefined) cfg.mqttPublicUrl = pub;
  const root = get('root');
  if (root !== undefined) {
    const explicitLinkPort = typeof values['root-link-port'] === 'string' ? values['root-link-port'] : env.OAK_ROOT_LINK_PORT || undefined;
    cfg.root = { address: linkAddress(root, explicitLinkPort), token: get('token') ?? '' };
  }
  return cfg;
}

async function main(): Promise<void> {
  let cfg: ClusterConfig | 'help';
  try {
    cfg = configFromArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`oak-cluster: ${err instanceof Error ? err.message : String(err)}\n\n${usage()}`);
    process.exit(2);
  }
  if (cfg === 'help') {
    process.stdout.write(usage());
    return;
  }
  const log = consoleLogger(`cluster ${cfg.name}`);
  if (!cfg.root) log.warn('no SYSTEM_MANAGER_URL: running standalone (no root)');
  else if (cfg.root.token === '') {
    log.error(
      process.env.OAK_CLUSTER_TOKEN
        ? 'OAK_CLUSTER_TOKEN is no longer used: give the cluster a join token in OAK_JOIN_TOKEN (oak token create cluster --name <name> on the root)'
        : 'no OAK_JOIN_TOKEN: the root refuses this cluster; create a token with `oak token create cluster --name <name>` on the root',
    );
  }
  const cluster = await startCluster({ ...cfg, log });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: shutting down`);
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    cluster.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error('shutdown failed', err);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

if (process.argv[1] !== undefined && /oak-cluster(\.mjs)?$|cluster[/\\]src[/\\]main\.ts$/.test(process.argv[1])) {
  main().catch((err: unknown) => {
    process.stderr.write(`oak-cluster: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
