/**
 * Command line of `NodeEngine`: Oakestra's flags (`-a`, `-p`, `-n`, `-h`, with their long names
 * `--clusterAddr`, `--clusterPort`, `--netmanagerPort`) plus ours. Pure: argv and env in, a config,
 * the help text or an error message out.
 */
import { ADDON_PATTERN, DEFAULT_PORTS, MAX_ADDONS, VIRTUALIZATIONS, tryParseJoinToken } from '@oak/contracts';
import type { Virtualization } from '@oak/contracts';
import { bridgePlan } from '@oak/net';
import { DEFAULT_CONTAINERD_SOCKET, DEFAULT_REPORT_INTERVAL_MS, defaultDataDir, isVirtualization, withDefaults } from './config.ts';
import type { NodeEngineConfig } from './config.ts';

export type FlagsResult =
  | { kind: 'run'; config: NodeEngineConfig }
  | { kind: 'help'; text: string }
  | { kind: 'error'; message: string };

interface FlagDef {
  short?: string;
  long: string;
  value?: string;
  /** a switch: takes no value */
  bool?: boolean;
  help: string;
  default: (env: NodeJS.ProcessEnv) => string;
}

const FLAGS: FlagDef[] = [
  { short: 'a', long: 'clusterAddr', value: 'address', help: 'address of the cluster orchestrator, without port', default: () => 'localhost' },
  { short: 'p', long: 'clusterPort', value: 'port', help: 'registration port of the cluster orchestrator', default: () => String(DEFAULT_PORTS.cluster) },
  { short: 't', long: 'token', value: 'token', help: 'worker join token from `oak token create worker --cluster <name>` (env OAK_JOIN_TOKEN); required', default: () => '' },
  { short: 'n', long: 'netmanagerPort', value: 'port', help: 'port of the local NetManager (overlay network); when given, the NodeEngine registers with it and its instances join the overlay (otherwise the port is only reported); 0 or -1: no NetManager', default: () => String(DEFAULT_PORTS.netmanager) },
  { long: 'netmanager-key-dir', value: 'dir', help: 'directory of the NetManager\'s key file netmanager-<port>.key (env OAK_NETMANAGER_KEY_DIR)', default: (env) => env['OAK_NETMANAGER_KEY_DIR'] ?? '/run/oak' },
  { long: 'name', value: 'name', help: 'node name shown to users', default: () => 'the host name' },
  { long: 'data-dir', value: 'dir', help: 'node id and instance state (env OAK_DATA_DIR)', default: (env) => defaultDataDir(env) },
  { long: 'containerd', value: 'socket', help: 'containerd socket for container instances', default: () => DEFAULT_CONTAINERD_SOCKET },
  { long: 'namespace', value: 'name', help: 'containerd namespace and cgroup parent of this worker\'s instances (several workers on one machine need different ones)', default: () => 'oak' },
  { long: 'report-interval', value: 'ms', help: 'interval of resource reports to the cluster', default: () => `${DEFAULT_REPORT_INTERVAL_MS}, or what the cluster asks for` },
  { long: 'location', value: 'lat,long', help: 'geographic location of this worker, for geo constraints', default: () => 'none' },
  { long: 'addons', value: 'list', help: 'addon labels this worker offers, for the SLA\'s addons constraints (comma list, e.g. image-builder,FLOps-learner; env OAK_ADDONS)', default: (env) => env['OAK_ADDONS'] ?? 'none' },
  { long: 'runtimes', value: 'list', help: `offer only these virtualizations (comma list of ${VIRTUALIZATIONS.join(', ')})`, default: () => 'all that are available' },
  { long: 'mqtt-url', value: 'url', help: 'MQTT broker to use instead of the one the cluster names', default: () => 'from the cluster' },
  { long: 'run-as', value: 'user', help: 'user that process workloads run as when the NodeEngine runs as root; "root" only when given explicitly (env OAK_RUN_AS)', default: (env) => env['OAK_RUN_AS'] ?? 'oak-workload' },
  { long: 'allow-privileged', bool: true, help: 'honour privileged: true (Admin services only); without it such instances fail', default: () => 'off' },
  { long: 'volume-allow', value: 'dir,...', help: 'host directories that volumes may bind-mount from', default: () => 'none' },
  { long: 'microvm-kernel', value: 'dir', help: 'where `dpkg-deb -x` of Debian\'s linux-image-*-cloud-amd64 was unpacked (scripts/microvm-kernel.sh); without a kernel there, microvm is not offered (env OAK_MICROVM_KERNEL)', default: (env) => env['OAK_MICROVM_KERNEL'] ?? '/var/cache/oak/microvm-kernel' },
  { long: 'isolation', value: 'auto|on|off', help: 'each instance in its own network namespace behind the worker bridge, no access to the node\'s ports (env OAK_ISOLATION)', default: (env) => env['OAK_ISOLATION'] ?? 'auto: on when root with ip and nftables' },
  { long: 'bridge-subnet', value: 'cidr', help: 'IPv4 subnet of the instance bridge', default: () => '172.30.0.0/24 for namespace oak, 172.30.<n>.0/24 for others' },
  { long: 'log-retention', value: 'duration', help: 'keep the logs of ended and undeployed instances this long after they ended (s, m, h or d, e.g. 90m; 0 keeps none)', default: () => '24h' },
  { long: 'log-keep-instance-mb', value: 'MB', help: 'logs kept per ended instance (the newest part)', default: () => '8' },
  { long: 'log-keep-total-mb', value: 'MB', help: 'logs of ended instances kept in all; the instances that ended first are dropped first', default: () => '256' },
  { long: 'upgrade-check', value: 'executable', help: 'after a fleet upgrade restarted this NodeEngine into a new version, run this; a non-zero exit fails the upgrade and the rollout rolls it back (env OAK_UPGRADE_CHECK)', default: (env) => env['OAK_UPGRADE_CHECK'] ?? 'none' },
  { short: 'h', long: 'help', help: 'print this help and exit', default: () => '' },
];

export function helpText(env: NodeJS.ProcessEnv = process.env): string {
  const rows = FLAGS.map((f) => {
    const names = `${f.short !== undefined ? `-${f.short}, ` : '    '}--${f.long}${f.value !== undefined ? ` <${f.value}>` : ''}`;
    const d = f.default(env);
    return { names, text: d === '' ? f.help : `${f.help} (default: ${d})` };
  });
  const width = Math.max(...rows.map((r) => r.names.length)) + 2;
  return [
    'NodeEngine: the oak worker agent. Registers with a cluster orchestrator, reports this',
    "machine's resources and runs the instances the cluster sends (containers, processes, ...).",
    '',
    'Usage: NodeEngine -a <cluster address> -t <join token> [-p <cluster port>] [-n <NetManager port>] [options]',
    '',
    'Options:',
    ...rows.map((r) => `  ${r.names.padEnd(width)}${r.text}`),
    '',
    'Example: NodeEngine -a 192.168.1.10 -p 10100 -n 0 -t oak1.w.<id>.<secret>.<ca hash>',
    '',
    'The token authorises this worker and pins the cluster: registration (HTTPS) and MQTT (TLS) are',
    'verified against the CA whose fingerprint the token carries. The root prints the command with a',
    'fresh token (`oak token create worker --cluster <name>`).',
    '',
  ].join('\n');
}

function intIn(text: string, lo: number, hi: number): number | undefined {
  if (!/^-?\d+$/.test(text)) return undefined;
  const n = Number(text);
  return n >= lo && n <= hi ? n : undefined;
}

/** `lat,long` in decimal degrees within range; the reason otherwise. */
export function latLongProblem(s: string): string | undefined {
  const parts = s.split(',').map((p) => p.trim());
  if (parts.length !== 2 || !parts.every((p) => /^[+-]?(\d+(\.\d*)?|\.\d+)$/.test(p))) return `${JSON.stringify(s)} is not "lat,long" in decimal degrees`;
  const [lat, long] = parts.map(Number) as [number, number];
  if (lat < -90 || lat > 90) return `latitude ${lat} is outside -90..90`;
  if (long < -180 || long > 180) return `longitude ${long} is outside -180..180`;
  return undefined;
}

export function parseFlags(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): FlagsResult {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    let def: FlagDef | undefined;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      if (eq >= 0) inline = arg.slice(eq + 1);
      def = FLAGS.find((f) => f.long === name);
    } else if (/^-[a-zA-Z]/.test(arg)) {
      def = FLAGS.find((f) => f.short === arg[1]);
      if (arg.length > 2) inline = arg.slice(2);
    } else {
      return { kind: 'error', message: `unexpected argument ${JSON.stringify(arg)}; NodeEngine takes only flags (see NodeEngine -h)` };
    }
    if (def === undefined) return { kind: 'error', message: `unknown flag ${arg.split('=')[0] as string} (see NodeEngine -h for the list)` };
    if (def.long === 'help') {
      if (inline !== undefined) return { kind: 'error', message: `${arg}: --help takes no value` };
      return { kind: 'help', text: helpText(env) };
    }
    if (def.bool === true) {
      if (inline !== undefined && inline !== 'true' && inline !== 'false') return { kind: 'error', message: `${arg}: --${def.long} is a switch (no value, or =true / =false)` };
      values.set(def.long, inline ?? 'true');
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined) return { kind: 'error', message: `${arg} needs a value <${def.value ?? 'value'}>` };
      value = next;
      i++;
    }
    values.set(def.long, value);
  }

  const partial: Partial<NodeEngineConfig> = {};
  const token = values.get('token') ?? (env['OAK_JOIN_TOKEN'] !== undefined && env['OAK_JOIN_TOKEN'] !== '' ? env['OAK_JOIN_TOKEN'] : undefined);
  if (token === undefined) {
    return { kind: 'error', message: 'a worker join token is required: NodeEngine -t <token> (or OAK_JOIN_TOKEN); create one on the root with `oak token create worker --cluster <name>`' };
  }
  const parsed = tryParseJoinToken(token);
  if (parsed === undefined) return { kind: 'error', message: '-t: this is not an oak join token (oak1.w.<id>.<secret>.<ca hash>); create one with `oak token create worker --cluster <name>`' };
  if (parsed.kind !== 'worker') return { kind: 'error', message: '-t: this is a cluster join token; a worker needs `oak token create worker --cluster <name>`' };
  partial.joinToken = token.trim();
  const a = values.get('clusterAddr');
  let portOfA: string | undefined;
  if (a !== undefined) {
    if (a.trim() === '' || /[\s/]/.test(a)) return { kind: 'error', message: `-a ${JSON.stringify(a)}: give a host name or IP address without scheme, port or path` };
    // address:port as users write it (an IPv6 address with a port in brackets): the port is -p's
    const hp = /^\[([^\]]+)\]:(\d{1,5})$/.exec(a) ?? /^([^:[\]]+):(\d{1,5})$/.exec(a);
    partial.clusterAddress = hp?.[1] ?? a.replace(/^\[(.+)\]$/, '$1');
    portOfA = hp?.[2];
  }
  const p = values.get('clusterPort') ?? portOfA;
  if (values.get('clusterPort') !== undefined && portOfA !== undefined && Number(values.get('clusterPort')) !== Number(portOfA)) {
    return { kind: 'error', message: `-a ${JSON.stringify(a)} names port ${portOfA} but -p says ${JSON.stringify(values.get('clusterPort'))}; give the port once` };
  }
  if (p !== undefined) {
    const n = intIn(p, 1, 65535);
    if (n === undefined) return { kind: 'error', message: `-p ${JSON.stringify(p)}: the cluster port must be a number between 1 and 65535` };
    partial.clusterPort = n;
  }
  const nm = values.get('netmanagerPort');
  if (nm !== undefined) {
    const n = intIn(nm, -1, 65535);
    if (n === undefined) return { kind: 'error', message: `-n ${JSON.stringify(nm)}: the NetManager port must be a number between 1 and 65535, or 0 / -1 for none` };
    partial.netmanagerPort = n <= 0 ? null : n;
    if (n > 0) partial.useNetManager = true;
  }
  const kd = values.get('netmanager-key-dir');
  if (kd !== undefined) {
    if (!kd.startsWith('/') || kd.split('/').includes('..')) return { kind: 'error', message: `--netmanager-key-dir ${JSON.stringify(kd)}: give an absolute directory path` };
    partial.netmanagerKeyDir = kd;
  }
  const name = values.get('name');
  if (name !== undefined) {
    if (name.trim() === '') return { kind: 'error', message: '--name must not be empty' };
    partial.name = name;
  }
  const dataDir = values.get('data-dir');
  if (dataDir !== undefined) {
    if (dataDir === '') return { kind: 'error', message: '--data-dir must not be empty' };
    partial.dataDir = dataDir;
  }
  const sock = values.get('containerd');
  if (sock !== undefined) partial.containerdSocket = sock.replace(/^unix:\/\//, '');
  const ns = values.get('namespace');
  if (ns !== undefined) {
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$/.test(ns)) return { kind: 'error', message: `--namespace ${JSON.stringify(ns)}: use letters, digits, - and _ (at most 63)` };
    partial.namespace = ns;
  }
  const ri = values.get('report-interval');
  if (ri !== undefined) {
    const n = intIn(ri, 100, 3_600_000);
    if (n === undefined) return { kind: 'error', message: `--report-interval ${JSON.stringify(ri)}: give milliseconds between 100 and 3600000` };
    partial.reportIntervalMs = n;
  }
  const loc = values.get('location');
  if (loc !== undefined) {
    const problem = latLongProblem(loc);
    if (problem !== undefined) return { kind: 'error', message: `--location: ${problem}` };
    partial.location = loc.split(',').map((x) => x.trim()).join(',');
  }
  const addons = values.get('addons') ?? env['OAK_ADDONS'];
  if (addons !== undefined && addons.trim() !== '') {
    const list = [...new Set(addons.split(',').map((x) => x.trim()).filter((x) => x !== ''))];
    const re = new RegExp(ADDON_PATTERN);
    const bad = list.find((x) => !re.test(x));
    if (bad !== undefined) return { kind: 'error', message: `--addons: ${JSON.stringify(bad.slice(0, 80))} is not an addon label (a letter or digit, then up to 63 letters, digits, ".", "_" or "-")` };
    if (list.length > MAX_ADDONS) return { kind: 'error', message: `--addons: ${list.length} labels; at most ${MAX_ADDONS} are allowed` };
    partial.addons = list;
  }
  const rts = values.get('runtimes');
  if (rts !== undefined) {
    const list = rts.split(',').map((x) => x.trim()).filter((x) => x !== '');
    const bad = list.filter((x) => !isVirtualization(x));
    if (list.length === 0 || bad.length > 0) {
      return { kind: 'error', message: `--runtimes ${JSON.stringify(rts)}: ${bad.length > 0 ? `unknown ${bad.join(', ')}; ` : ''}give a comma list of ${VIRTUALIZATIONS.join(', ')}` };
    }
    partial.runtimes = [...new Set(list)] as Virtualization[];
  }
  const mqttUrl = values.get('mqtt-url');
  if (mqttUrl !== undefined) {
    if (!/^(mqtts?|tcp|ssl|wss?):\/\/[^/]+/.test(mqttUrl)) return { kind: 'error', message: `--mqtt-url ${JSON.stringify(mqttUrl)}: give a URL such as mqtt://host:10003` };
    partial.mqttUrl = mqttUrl;
  }
  const runAs = values.get('run-as') ?? env['OAK_RUN_AS'];
  if (runAs !== undefined && runAs !== '') {
    if (!/^[a-z_][a-z0-9_-]{0,31}$/i.test(runAs) && !/^\d{1,10}$/.test(runAs)) return { kind: 'error', message: `--run-as ${JSON.stringify(runAs)}: give a user name or a numeric uid` };
    partial.runAs = runAs;
  }
  if (values.get('allow-privileged') === 'true') partial.allowPrivileged = true;
  const va = values.get('volume-allow');
  if (va !== undefined) {
    const dirs = va.split(',').map((x) => x.trim()).filter((x) => x !== '');
    const bad = dirs.find((d) => !d.startsWith('/') || d.split('/').includes('..'));
    if (bad !== undefined) return { kind: 'error', message: `--volume-allow: ${JSON.stringify(bad)} is not an absolute directory path` };
    if (dirs.includes('/')) return { kind: 'error', message: '--volume-allow: "/" would let workloads mount the whole host (data dirs, keys); name narrower directories' };
    partial.volumeAllow = dirs;
  }
  const mk = values.get('microvm-kernel') ?? env['OAK_MICROVM_KERNEL'];
  if (mk !== undefined && mk !== '') {
    if (!mk.startsWith('/') || mk.split('/').includes('..') || mk.length > 1024) return { kind: 'error', message: `--microvm-kernel ${JSON.stringify(mk.slice(0, 100))}: give an absolute directory path` };
    partial.microvmKernel = mk;
  }
  const iso = values.get('isolation') ?? env['OAK_ISOLATION'];
  if (iso !== undefined && iso !== '') {
    if (iso !== 'auto' && iso !== 'on' && iso !== 'off') return { kind: 'error', message: `--isolation ${JSON.stringify(iso)}: give auto, on or off` };
    partial.isolation = iso;
  }
  const bs = values.get('bridge-subnet');
  if (bs !== undefined) {
    try {
      bridgePlan(partial.namespace ?? 'oak', bs);
    } catch (err) {
      return { kind: 'error', message: `--bridge-subnet: ${err instanceof Error ? err.message : String(err)}` };
    }
    partial.bridgeSubnet = bs;
  }
  const lr = values.get('log-retention');
  if (lr !== undefined) {
    const ms = parseRetention(lr);
    if (ms === undefined) return { kind: 'error', message: `--log-retention ${JSON.stringify(lr)}: give a duration such as 3600s, 90m, 24h or 7d (at most 365d; 0 keeps none)` };
    partial.logRetentionMs = ms;
  }
  for (const [flag, key] of [['log-keep-instance-mb', 'logKeepInstanceBytes'], ['log-keep-total-mb', 'logKeepTotalBytes']] as const) {
    const v = values.get(flag);
    if (v === undefined) continue;
    const mb = intIn(v, 0, 1_048_576);
    if (mb === undefined) return { kind: 'error', message: `--${flag} ${JSON.stringify(v)}: give whole megabytes between 0 and 1048576` };
    partial[key] = mb * 1024 * 1024;
  }
  const uc = values.get('upgrade-check') ?? env['OAK_UPGRADE_CHECK'];
  if (uc !== undefined && uc !== '') {
    if (!uc.startsWith('/') || uc.split('/').includes('..') || uc.length > 1024) return { kind: 'error', message: `--upgrade-check ${JSON.stringify(uc.slice(0, 100))}: give the absolute path of an executable` };
    partial.upgradeCheck = uc;
  }
  return { kind: 'run', config: withDefaults(partial, env) };
}

/** `--log-retention`: 3600s, 90m, 24h, 7d (or 0); undefined when not one of these or over 365 days. */
export function parseRetention(text: string): number | undefined {
  const m = /^(\d{1,9})(s|m|h|d)?$/.exec(text.trim());
  if (m === null) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? (n === 0 ? 's' : undefined);
  if (unit === undefined) return undefined;
  const ms = n * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[unit as 's' | 'm' | 'h' | 'd'];
  return ms <= 365 * 86_400_000 ? ms : undefined;
}
