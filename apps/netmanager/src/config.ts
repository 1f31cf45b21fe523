/**
 * NetManager settings: Oakestra's flags (`-p` port, `-c` config file, `--clean`) and its config
 * file (`NodePublicAddress`, `NodePublicPort`, `ClusterUrl`, `ClusterMqttPort`, strings or
 * numbers), plus ours with environment equivalents. Pure: argv, env and a file reader in, settings
 * or a ConfigError out (the launcher prints it and exits 2).
 *
 * ClusterUrl / ClusterMqttPort only name a fallback broker: the NodeEngine's POST /register gives
 * the broker URL and the worker's MQTT identity that are actually used.
 */
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const NETMANAGER_VERSION = '0.1.0';
export const DEFAULT_API_PORT = 6000;
export const DEFAULT_CONFIG_PATH = '/etc/netmanager/netcfg.json';
export const DEFAULT_PUBLIC_PORT = 50103;
export const DEFAULT_CLUSTER_MQTT_PORT = 10003;
export const DEFAULT_PROBE_INTERVAL_MS = 5000;
export const DEFAULT_KEY_DIR = '/run/oak';
const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface NetManagerSettings {
  /** local API port on 127.0.0.1 (0: ephemeral) */
  port: number;
  configPath: string;
  /** remove everything this NetManager made and exit */
  clean: boolean;
  help: boolean;
  version: boolean;
  dataDir: string;
  /** where the API key file goes (netmanager-<port>.key) */
  keyDir: string;
  dns: boolean;
  /** DNS upstreams (default: the host's /etc/resolv.conf) */
  upstreams: string[] | undefined;
  probeIntervalMs: number;
  logLevel: LogLevel;
  /** NodePublicAddress: the tunnel endpoint other workers reach */
  publicAddress: string;
  /** NodePublicPort: UDP port of the VXLAN tunnel */
  publicPort: number;
  /** ClusterUrl / ClusterMqttPort: broker used only when /register gives none */
  clusterUrl: string | undefined;
  clusterMqttPort: number;
}

export class ConfigError extends Error {
  readonly code = 'OAK_BAD_REQUEST';
  readonly hint: string | undefined;
  constructor(message: string, hint?: string) {
    super(message);
    this.name = 'ConfigError';
    this.hint = hint;
  }
}

interface Flag {
  long: string;
  short?: string;
  env?: string;
  value?: string;
  help: string;
  def?: string;
  bool?: boolean;
}

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (process.getuid?.() === 0) return '/var/lib/oak';
  return join(env['HOME'] ?? homedir(), '.local', 'share', 'oak');
}

const FLAGS: Flag[] = [
  { long: 'port', short: 'p', env: 'OAK_NETMANAGER_PORT', value: 'port', help: 'port of the local API on 127.0.0.1 (the NodeEngine\'s -n)', def: String(DEFAULT_API_PORT) },
  { long: 'config', short: 'c', env: 'OAK_NETMANAGER_CONFIG', value: 'file', help: 'config file (NodePublicAddress, NodePublicPort, ClusterUrl, ClusterMqttPort)', def: DEFAULT_CONFIG_PATH },
  { long: 'clean', bool: true, help: 'remove everything this NetManager made (tunnel, routes, nftables table, state) and exit' },
  { long: 'public-address', env: 'OAK_NODE_PUBLIC_ADDRESS', value: 'ip', help: 'NodePublicAddress: tunnel endpoint other workers reach (overrides the config file)' },
  { long: 'public-port', env: 'OAK_NODE_PUBLIC_PORT', value: 'port', help: 'NodePublicPort: UDP port of the tunnel', def: String(DEFAULT_PUBLIC_PORT) },
  { long: 'cluster-url', env: 'OAK_CLUSTER_URL', value: 'host', help: 'ClusterUrl: fallback broker host when the NodeEngine gives none' },
  { long: 'cluster-mqtt-port', env: 'OAK_CLUSTER_MQTT_PORT', value: 'port', help: 'ClusterMqttPort: fallback broker port', def: String(DEFAULT_CLUSTER_MQTT_PORT) },
  { long: 'data-dir', env: 'OAK_DATA_DIR', value: 'dir', help: 'where the registration is kept (netmanager.json)', def: '/var/lib/oak as root, else ~/.local/share/oak' },
  { long: 'key-dir', env: 'OAK_NETMANAGER_KEY_DIR', value: 'dir', help: 'where the API key file netmanager-<port>.key is written', def: DEFAULT_KEY_DIR },
  { long: 'dns', env: 'OAK_NETMANAGER_DNS', value: 'on|off', help: 'the resolver on the bridge gateway, port 53', def: 'on' },
  { long: 'dns-upstream', env: 'OAK_DNS_UPSTREAM', value: 'ip[,ip]', help: 'resolvers for names outside .oak', def: 'the nameservers of /etc/resolv.conf' },
  { long: 'probe-interval-ms', env: 'OAK_PROBE_INTERVAL_MS', value: 'ms', help: 'RTT probe interval towards the other workers', def: String(DEFAULT_PROBE_INTERVAL_MS) },
  { long: 'log-level', env: 'OAK_LOG_LEVEL', value: 'level', help: 'debug | info | warn | error', def: 'info' },
  { long: 'help', short: 'h', bool: true, help: 'show this help' },
  { long: 'version', bool: true, help: 'print the version' },
];

export function usage(): string {
  const rows = FLAGS.map((f) => {
    const left = `  ${f.short !== undefined ? `-${f.short}, ` : '    '}--${f.long}${f.value !== undefined ? ` <${f.value}>` : ''}`;
    const right = [f.help, [f.env !== undefined ? `env ${f.env}` : '', f.def !== undefined ? `default ${f.def}` : ''].filter((s) => s !== '').join(', ')].filter((s) => s !== '');
    return `${left.padEnd(36)}${right.join(`\n${''.padEnd(36)}`)}`;
  });
  return [
    'Usage: NetManager [-p <port>] [-c <config file>] [--clean] [options]',
    '',
    'The overlay network of one worker: registers with its NodeEngine (local API, bearer key in',
    '<key-dir>/netmanager-<port>.key), talks to the cluster over MQTT with the worker\'s identity,',
    'programs the VXLAN tunnel, routes and nftables service translation, and answers *.oak names.',
    '',
    'Config file keys (strings or numbers): NodePublicAddress, NodePublicPort (50103),',
    'ClusterUrl, ClusterMqttPort (10003). Flags override the file.',
    '',
    'Options:',
    ...rows,
    '',
  ].join('\n');
}

/** the config file as read (undefined: missing) */
export type ReadFile = (path: string) => string | undefined;

function portOf(raw: unknown, what: string, allowZero = false): number {
  const text = typeof raw === 'number' ? String(raw) : typeof raw === 'string' ? raw.trim() : undefined;
  const n = text !== undefined && /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= (allowZero ? 0 : 1) && n <= 65535)) {
    throw new ConfigError(`${what}: ${JSON.stringify(raw)} is not a port number`, `give a number between ${allowZero ? 0 : 1} and 65535`);
  }
  return n;
}

function addressOf(raw: unknown, what: string): string {
  const text = typeof raw === 'string' ? raw.trim() : undefined;
  if (text === undefined || isIP(text) === 0) {
    throw new ConfigError(`${what}: ${JSON.stringify(raw)} is not an IP address`, 'give the worker\'s address other workers reach it on, e.g. 192.0.2.10');
  }
  return text;
}

function hostOf(raw: unknown, what: string): string {
  const text = typeof raw === 'string' ? raw.trim() : typeof raw === 'number' ? String(raw) : undefined;
  if (text === undefined || text === '' || text.length > 1000 || /\s/.test(text)) {
    throw new ConfigError(`${what}: ${JSON.stringify(raw)} is not a host name, address or URL`, 'give e.g. 192.0.2.1 or mqtt://192.0.2.1:10003');
  }
  return text;
}

function intOf(raw: string, what: string, min: number, max: number): number {
  const n = /^\d{1,9}$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!(n >= min && n <= max)) throw new ConfigError(`${what}: ${JSON.stringify(raw)} is not a number between ${min} and ${max}`);
  return n;
}

interface FileConfig {
  NodePublicAddress?: unknown;
  NodePublicPort?: unknown;
  ClusterUrl?: unknown;
  ClusterMqttPort?: unknown;
}

function readConfigFile(path: string, read: ReadFile, explicit: boolean): FileConfig {
  let text: string | undefined;
  try {
    text = read(path);
  } catch (err) {
    throw new ConfigError(`config file ${path}: ${err instanceof Error ? err.message : String(err)}`, 'check its permissions');
  }
  if (text === undefined) {
    if (explicit) throw new ConfigError(`config file ${path} does not exist`, 'give an existing file with -c, or leave -c out and pass --public-address');
    return {};
  }
  if (text.length > 1024 * 1024) throw new ConfigError(`config file ${path} is larger than 1 MiB`);
  let doc: unknown;
  try {
    doc = JSON.parse(text) as unknown;
  } catch (err) {
    throw new ConfigError(`config file ${path} is not JSON: ${err instanceof Error ? err.message : String(err)}`, 'write e.g. {"NodePublicAddress": "192.0.2.10", "NodePublicPort": 50103}');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new ConfigError(`config file ${path}: expected a JSON object`);
  return doc as FileConfig;
}

/** Settings from argv (without node and script), the environment and the config file. */
export function parseCli(argv: string[], env: NodeJS.ProcessEnv, read: ReadFile): NetManagerSettings {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const f of FLAGS) options[f.long] = { type: f.bool === true ? 'boolean' : 'string', ...(f.short !== undefined ? { short: f.short } : {}) };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (err) {
    throw new ConfigError(err instanceof Error ? err.message : String(err), 'see NetManager --help');
  }
  const get = (long: string): string | undefined => {
    const v = values[long];
    if (typeof v === 'string') return v;
    const f = FLAGS.find((x) => x.long === long);
    const e = f?.env !== undefined ? env[f.env] : undefined;
    return e !== undefined && e !== '' ? e : undefined;
  };
  const help = values['help'] === true;
  const version = values['version'] === true;
  const clean = values['clean'] === true;

  const configPath = get('config') ?? DEFAULT_CONFIG_PATH;
  const file = help || version ? {} : readConfigFile(configPath, read, get('config') !== undefined);

  const port = portOf(get('port') ?? DEFAULT_API_PORT, '--port', true);
  const rawAddress = get('public-address') ?? file.NodePublicAddress;
  const publicAddress = rawAddress === undefined ? '' : addressOf(rawAddress, get('public-address') !== undefined ? '--public-address' : `NodePublicAddress in ${configPath}`);
  if (publicAddress === '' && !help && !version && !clean) {
    throw new ConfigError(`no NodePublicAddress: ${configPath} does not give one and --public-address is not set`, 'set NodePublicAddress in the config file or pass --public-address <ip>');
  }
  const rawPort = get('public-port') ?? file.NodePublicPort ?? DEFAULT_PUBLIC_PORT;
  const publicPort = portOf(rawPort, get('public-port') !== undefined ? '--public-port' : `NodePublicPort in ${configPath}`);
  const rawUrl = get('cluster-url') ?? file.ClusterUrl;
  const clusterUrl = rawUrl === undefined ? undefined : hostOf(rawUrl, get('cluster-url') !== undefined ? '--cluster-url' : `ClusterUrl in ${configPath}`);
  const rawMqtt = get('cluster-mqtt-port') ?? file.ClusterMqttPort ?? DEFAULT_CLUSTER_MQTT_PORT;
  const clusterMqttPort = portOf(rawMqtt, get('cluster-mqtt-port') !== undefined ? '--cluster-mqtt-port' : `ClusterMqttPort in ${configPath}`);

  const dnsRaw = (get('dns') ?? 'on').trim().toLowerCase();
  if (!['on', 'off', 'true', 'false', '1', '0'].includes(dnsRaw)) throw new ConfigError(`--dns: ${JSON.stringify(dnsRaw)} is not on or off`);
  const dns = dnsRaw === 'on' || dnsRaw === 'true' || dnsRaw === '1';
  const upRaw = get('dns-upstream');
  let upstreams: string[] | undefined;
  if (upRaw !== undefined) {
    upstreams = upRaw.split(',').map((s) => s.trim()).filter((s) => s !== '');
    for (const u of upstreams) addressOf(u, '--dns-upstream');
  }
  const probeIntervalMs = intOf(get('probe-interval-ms') ?? String(DEFAULT_PROBE_INTERVAL_MS), '--probe-interval-ms', 100, 3_600_000);
  const level = (get('log-level') ?? 'info').trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new ConfigError(`--log-level: ${JSON.stringify(level)} is not one of ${LOG_LEVELS.join(', ')}`);
  const dataDir = get('data-dir') ?? defaultDataDir(env);
  const keyDir = get('key-dir') ?? DEFAULT_KEY_DIR;
  return {
    port, configPath, clean, help, version, dataDir, keyDir, dns, upstreams, probeIntervalMs, logLevel: level as LogLevel,
    publicAddress, publicPort, clusterUrl, clusterMqttPort,
  };
}

/** The fallback broker URL from ClusterUrl / ClusterMqttPort (a full URL is taken as it is). */
export function fallbackBrokerUrl(s: Pick<NetManagerSettings, 'clusterUrl' | 'clusterMqttPort'>): string | undefined {
  if (s.clusterUrl === undefined) return undefined;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s.clusterUrl)) return s.clusterUrl;
  const host = s.clusterUrl.includes(':') && isIP(s.clusterUrl) === 6 ? `[${s.clusterUrl}]` : s.clusterUrl;
  return `mqtt://${host}:${s.clusterMqttPort}`;
}
