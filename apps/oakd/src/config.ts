/**
 * oakd settings: one flag per setting, each with an environment variable (SPEC §1); flags win.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_PORTS } from '@oak/contracts';
import { checkExtraServiceRanges } from '@oak/root';

export interface OakdConfig {
  /** IPv4 ranges besides 10.30.0.0/16 where a requested rr_ip is honoured (the root's --extra-service-ranges) */
  extraServiceRanges?: string[];
  host: string;
  port: number;
  linkPort: number;
  clusterPort: number;
  mqttPort: number;
  dataDir: string;
  databaseUrl?: string | undefined;
  mqttUrl?: string | undefined;
  adminPassword?: string | undefined;
  clusterName: string;
  clusterLocation?: string | undefined;
  /** containerd socket; undefined = find one or start one */
  containerd?: string | undefined;
  namespace: string;
  reportIntervalMs?: number | undefined;
  workerName?: string | undefined;
  /** run no worker in this process (root + cluster only) */
  noWorker: boolean;
  /** the built-in NetManager (overlay network) for the built-in worker (default on) */
  netmanager: boolean;
  /** `--netmanager` was given explicitly (a failure to start it is then fatal) */
  netmanagerExplicit: boolean;
  /** its local API port (default 6000; 0: any free one) */
  netmanagerPort: number;
  /** NodePublicAddress: the tunnel endpoint other workers reach (undefined: see netmanager.ts) */
  publicAddress?: string | undefined;
  /** NodePublicPort: the VXLAN UDP port (default 50103) */
  publicPort: number;
  logLevel: string;
}

interface Setting {
  flag: string;
  env?: string;
  help: string;
  def?: string;
  boolean?: boolean;
}

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.OAK_DATA_DIR) return env.OAK_DATA_DIR;
  if (process.getuid?.() === 0) return '/var/lib/oak';
  const home = env.HOME ?? '/tmp';
  return `${env.XDG_DATA_HOME || `${home}/.local/share`}/oak`;
}

const SETTINGS: Setting[] = [
  { flag: 'host', env: 'OAK_HOST', help: 'address every port listens on', def: '0.0.0.0' },
  { flag: 'port', env: 'OAK_ROOT_PORT', help: 'REST API port', def: String(DEFAULT_PORTS.root) },
  { flag: 'link-port', env: 'OAK_LINK_PORT', help: 'port clusters dial to reach the root', def: String(DEFAULT_PORTS.rootLink) },
  { flag: 'cluster-port', env: 'OAK_CLUSTER_PORT', help: 'worker registration port', def: String(DEFAULT_PORTS.cluster) },
  { flag: 'mqtt-port', env: 'OAK_MQTT_PORT', help: 'embedded MQTT broker port', def: String(DEFAULT_PORTS.clusterMqtt) },
  { flag: 'data-dir', env: 'OAK_DATA_DIR', help: 'where state lives (SQLite, worker id, instance state)', def: defaultDataDir({ ...process.env, OAK_DATA_DIR: '' }) },
  { flag: 'database-url', env: 'DATABASE_URL', help: 'postgres://... to use PostgreSQL instead of SQLite' },
  { flag: 'mqtt-url', env: 'MQTT_URL', help: 'external MQTT broker instead of the embedded one' },
  { flag: 'cluster-name', env: 'CLUSTER_NAME', help: 'name of the embedded cluster', def: 'local' },
  { flag: 'cluster-location', env: 'CLUSTER_LOCATION', help: 'lat,long of this device, for geo constraints' },
  { flag: 'containerd', env: 'OAK_CONTAINERD', help: 'containerd socket (default: the system one, else one oakd starts)' },
  { flag: 'namespace', env: 'OAK_NAMESPACE', help: 'containerd namespace and cgroup parent of instances', def: 'oak' },
  { flag: 'report-interval', env: 'OAK_REPORT_INTERVAL_MS', help: 'worker report interval in ms', def: '2000' },
  { flag: 'worker-name', env: 'OAK_WORKER_NAME', help: 'name of the embedded worker', def: 'the host name' },
  { flag: 'netmanager', env: 'OAK_NETMANAGER', help: 'on | off: the built-in NetManager (overlay network between workers, service IPs, DNS)', def: 'on' },
  { flag: 'netmanager-port', env: 'OAK_NETMANAGER_PORT', help: 'local API port of the built-in NetManager (0: any free one)', def: String(DEFAULT_PORTS.netmanager) },
  { flag: 'public-address', env: 'OAK_PUBLIC_ADDRESS', help: 'NodePublicAddress: the address other workers reach this device at (overlay tunnel)', def: '--host when specific, else the first non-loopback IPv4' },
  { flag: 'public-port', env: 'OAK_PUBLIC_PORT', help: 'NodePublicPort: UDP port of the overlay tunnel', def: '50103' },
  { flag: 'extra-service-ranges', env: 'OAK_EXTRA_SERVICE_RANGES', help: 'IPv4 CIDRs (comma separated, at most 15) besides 10.30.0.0/16 where a requested rr_ip is honoured (docs/operations.md)' },
  { flag: 'no-worker', help: 'run root and cluster only (workers join with NodeEngine -a <this device>)', boolean: true },
  { flag: 'log-level', env: 'OAK_LOG_LEVEL', help: 'fatal | error | warn | info | debug', def: 'info' },
];

export function usage(): string {
  const rows = SETTINGS.map((s) => {
    const left = `  --${s.flag}${s.boolean ? '' : ' <value>'}`;
    const extra = [s.env ? `env ${s.env}` : '', s.def !== undefined ? `default ${s.def}` : ''].filter(Boolean).join(', ');
    return `${left.padEnd(30)}${s.help}${extra ? `\n${''.padEnd(30)}${extra}` : ''}`;
  });
  return [
    'Usage: oakd [options]',
    '',
    '1-DOC: root orchestrator + cluster orchestrator + worker in one process, with an embedded',
    'MQTT broker and SQLite. The first start creates user Admin (password from OAK_ADMIN_PASSWORD,',
    'else generated and printed once).',
    '',
    'Options:',
    ...rows,
    '  -h, --help                  show this help',
    '',
  ].join('\n');
}

export class UsageError extends Error {}

export function parseConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): OakdConfig | 'help' {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const s of SETTINGS) options[s.flag] = { type: s.boolean ? 'boolean' : 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  if (values.help === true) return 'help';
  const get = (flag: string): string | undefined => {
    const v = values[flag];
    if (typeof v === 'string') return v;
    const s = SETTINGS.find((x) => x.flag === flag);
    const e = s?.env ? env[s.env] : undefined;
    return e !== undefined && e !== '' ? e : undefined;
  };
  const port = (flag: string, def: number): number => {
    const text = get(flag) ?? String(def);
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`--${flag} must be a port number (0-65535), not ${JSON.stringify(text)}`);
    return n;
  };
  const ri = get('report-interval');
  const reportIntervalMs = ri === undefined ? undefined : Number(ri);
  if (reportIntervalMs !== undefined && (!Number.isInteger(reportIntervalMs) || reportIntervalMs < 100)) {
    throw new UsageError(`--report-interval must be milliseconds (>= 100), not ${JSON.stringify(ri)}`);
  }
  const nmText = get('netmanager') ?? 'on';
  if (nmText !== 'on' && nmText !== 'off') throw new UsageError(`--netmanager must be on or off, not ${JSON.stringify(nmText)}`);
  const pub = get('public-address');
  if (pub !== undefined && (pub.trim() === '' || /[\s/]/.test(pub) || pub.length > 255)) throw new UsageError(`--public-address ${JSON.stringify(pub)}: give an IP address or host name without scheme, port or path`);
  const publicPort = port('public-port', 50103);
  if (publicPort === 0) throw new UsageError('--public-port must be a port number (1-65535)');
  const rangesText = get('extra-service-ranges');
  let extraServiceRanges: string[] | undefined;
  if (rangesText !== undefined && rangesText.trim() !== '') {
    if (rangesText.length > 1000) throw new UsageError('--extra-service-ranges is longer than 1000 characters');
    try {
      extraServiceRanges = checkExtraServiceRanges(rangesText.split(',').map((x) => x.trim()).filter((x) => x !== ''));
    } catch (err) {
      throw new UsageError(`--extra-service-ranges: ${(err as Error).message.replace(/^extra service ranges: /, '')}`);
    }
  }
  return {
    ...(extraServiceRanges !== undefined ? { extraServiceRanges } : {}),
    netmanager: nmText === 'on',
    netmanagerExplicit: get('netmanager') !== undefined,
    netmanagerPort: port('netmanager-port', DEFAULT_PORTS.netmanager),
    publicAddress: pub,
    publicPort,
    host: get('host') ?? '0.0.0.0',
    port: port('port', DEFAULT_PORTS.root),
    linkPort: port('link-port', DEFAULT_PORTS.rootLink),
    clusterPort: port('cluster-port', DEFAULT_PORTS.cluster),
    mqttPort: port('mqtt-port', DEFAULT_PORTS.clusterMqtt),
    dataDir: get('data-dir') ?? defaultDataDir(env),
    databaseUrl: get('database-url'),
    mqttUrl: get('mqtt-url'),
    adminPassword: env.OAK_ADMIN_PASSWORD || undefined,
    clusterName: get('cluster-name') ?? 'local',
    clusterLocation: get('cluster-location'),
    containerd: get('containerd'),
    namespace: get('namespace') ?? 'oak',
    reportIntervalMs,
    workerName: get('worker-name'),
    noWorker: values['no-worker'] === true,
    logLevel: get('log-level') ?? 'info',
  };
}
