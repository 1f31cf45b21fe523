/**
 * `oak install` / `install.sh`, the pure part (docs/deployment.md): which program a role installs,
 * the validation of every value a user gives, the command line and environment of the service,
 * the systemd unit and environment file built from them, and version order. No I/O here: the
 * installer (apply.ts) only writes what these functions return.
 *
 * Every user value is checked against a narrow pattern before it reaches a unit, an environment
 * file or a printed command, and the writers refuse anything outside a safe character set as a
 * second line of defence, so a newline or a shell or systemd metacharacter can never become a
 * directive or a second command.
 */

export type Role = 'worker' | 'cluster' | 'root' | 'full' | 'cli';
export const ROLES: readonly Role[] = ['worker', 'cluster', 'root', 'full', 'cli'];

/** the release artifact (scripts/dist.mjs) that carries each role */
export const PROGRAM_OF: Record<Role, string> = { worker: 'node-engine', cluster: 'cluster', root: 'root', full: 'oakd', cli: 'cli' };

export type InstallErrorCode = 'INVALID_INPUT' | 'DOWNGRADE' | 'NOT_INSTALLED' | 'WRONG_ARTIFACT' | 'SYSTEMD_UNAVAILABLE' | 'COMMAND_FAILED';

/** An installer failure: a code, a message naming the value, and what to do about it. */
export class InstallError extends Error {
  readonly code: InstallErrorCode;
  readonly hint: string;

  constructor(code: InstallErrorCode, message: string, hint: string) {
    super(message);
    this.name = 'InstallError';
    this.code = code;
    this.hint = hint;
  }
}

const invalid = (flag: string, value: string, expected: string): InstallError =>
  new InstallError('INVALID_INPUT', `${flag} ${JSON.stringify(value.slice(0, 120))} is not valid: expected ${expected}`, `correct ${flag} and run the install again; nothing was changed`);

// ------------------------------------------------------------------------------ validation

const MAX_VALUE = 512;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV6 = /^[0-9A-Fa-f:.]{2,45}$/;

export function validHost(flag: string, v: string): string {
  if (IPV4.test(v) || HOSTNAME.test(v) || (IPV6.test(v) && v.includes(':'))) return v;
  throw invalid(flag, v, 'a host name, an IPv4 address or an IPv6 address');
}

export function validPort(flag: string, v: string, allowZero = false): number {
  const n = /^\d{1,5}$/.test(v) ? Number(v) : NaN;
  if (Number.isInteger(n) && n <= 65535 && (n > 0 || allowZero)) return n;
  throw invalid(flag, v, allowZero ? 'a port 0-65535' : 'a port 1-65535');
}

/** host, host:port or [v6]:port; the port defaults to `defaultPort` */
export function validAddress(flag: string, v: string, defaultPort: number): { host: string; port: number } {
  if (v.length > 260) throw invalid(flag, v, 'host[:port]');
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(v);
  if (bracket) return { host: validHost(flag, bracket[1] as string), port: bracket[2] === undefined ? defaultPort : validPort(flag, bracket[2]) };
  const colons = v.split(':').length - 1;
  if (colons === 1) {
    const [h, p] = v.split(':') as [string, string];
    return { host: validHost(flag, h), port: validPort(flag, p) };
  }
  return { host: validHost(flag, v), port: defaultPort };
}

const TOKEN = { worker: /^oak1\.w\.[a-z0-9]{8}\.[A-Za-z0-9_-]{32,128}\.[0-9a-f]{64}$/, cluster: /^oak1\.c\.[a-z0-9]{8}\.[A-Za-z0-9_-]{32,128}\.[0-9a-f]{64}$/ };

export function validToken(flag: string, v: string, kind: 'worker' | 'cluster'): string {
  if (TOKEN[kind].test(v)) return v;
  throw new InstallError(
    'INVALID_INPUT',
    `${flag} is not a ${kind} join token (oak1.${kind[0]}.<id>.<secret>.<ca hash>)`,
    `create one on a machine logged in to the root: oak token create ${kind === 'worker' ? 'worker --cluster <name>' : 'cluster --name <name>'}`,
  );
}

export function validName(flag: string, v: string): string {
  if (/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(v)) return v;
  throw invalid(flag, v, 'letters, digits, "_", "." and "-" (at most 63, starting with a letter or digit)');
}

export function validLocation(flag: string, v: string): string {
  const num = '-?\\d{1,3}(\\.\\d{1,10})?';
  if (new RegExp(`^${num},${num}(,\\d{1,9}(\\.\\d{1,6})?)?$`).test(v)) {
    const [lat, long] = v.split(',').map(Number) as [number, number];
    if (Math.abs(lat) <= 90 && Math.abs(long) <= 180) return v;
  }
  throw invalid(flag, v, 'lat,long or lat,long,radius (e.g. 48.1,11.6)');
}

/** an absolute path of plain characters, no `.`/`..` segments */
export function validPath(flag: string, v: string): string {
  if (v.length <= 255 && /^\/[A-Za-z0-9._+/-]*$/.test(v) && !v.includes('//') && !v.split('/').some((s) => s === '.' || s === '..')) {
    return v.length > 1 ? v.replace(/\/$/, '') : v;
  }
  throw invalid(flag, v, 'an absolute path of letters, digits and ._+-/ (no spaces, no . or .. segments)');
}

export function validChoice<T extends string>(flag: string, v: string, choices: readonly T[]): T {
  if ((choices as readonly string[]).includes(v)) return v as T;
  throw invalid(flag, v, `one of ${choices.join(', ')}`);
}

export function validInt(flag: string, v: string, min: number, max: number): number {
  const n = /^\d{1,9}$/.test(v) ? Number(v) : NaN;
  if (n >= min && n <= max) return n;
  throw invalid(flag, v, `a whole number ${min}-${max}`);
}

const RUNTIMES = ['container', 'unikernel', 'microvm', 'process', 'wasm'] as const;
export function validRuntimes(flag: string, v: string): string {
  const parts = v.split(',');
  if (v.length <= 80 && parts.every((p) => (RUNTIMES as readonly string[]).includes(p))) return v;
  throw invalid(flag, v, `a comma list of ${RUNTIMES.join(', ')}`);
}

export function validVersion(flag: string, v: string): string {
  if (/^\d{1,6}\.\d{1,6}\.\d{1,6}(-[0-9A-Za-z.]{1,40})?$/.test(v)) return v;
  throw invalid(flag, v, 'a version x.y.z[-pre]');
}

/** <0 when a is older than b, 0 when equal, >0 when newer (x.y.z, a -pre sorts before its release) */
export function compareVersions(a: string, b: string): number {
  const split = (v: string): [number[], string] => {
    const [main, pre = ''] = v.split(/-(.*)/s) as [string, string?];
    return [main.split('.').map(Number), pre];
  };
  const [am, ap] = split(a);
  const [bm, bp] = split(b);
  for (let i = 0; i < 3; i++) if ((am[i] ?? 0) !== (bm[i] ?? 0)) return (am[i] ?? 0) - (bm[i] ?? 0);
  if (ap === bp) return 0;
  if (ap === '') return 1;
  if (bp === '') return -1;
  return ap < bp ? -1 : 1;
}

// ------------------------------------------------------------------------------ settings

/** What the user asked for, validated; stored in the install manifest so an upgrade reuses it. */
export interface Settings {
  dataDir?: string;
  cluster?: string;
  clusterPort?: number;
  root?: string;
  token?: string;
  name?: string;
  location?: string;
  netmanager?: boolean;
  netmanagerPort?: number;
  publicAddress?: string;
  runtimes?: string;
  isolation?: 'auto' | 'on' | 'off';
  namespace?: string;
  containerd?: string;
  reportInterval?: number;
  tls?: 'auto';
  apiPort?: number;
}

/** the raw flag values (strings as typed) of one `install` run */
export type RawFlags = Partial<Record<string, string | boolean>>;

/** flags each role accepts (besides the common ones of the installer itself) */
export const ROLE_FLAGS: Record<Role, readonly string[]> = {
  worker: ['cluster', 'token', 'name', 'location', 'netmanager', 'netmanager-port', 'public-address', 'runtimes', 'isolation', 'namespace', 'containerd', 'report-interval', 'data-dir'],
  cluster: ['root', 'token', 'name', 'location', 'data-dir'],
  root: ['tls', 'port', 'data-dir'],
  full: ['name', 'location', 'public-address', 'netmanager', 'data-dir', 'port'],
  cli: [],
};

/** Validates the flags of `role` into Settings (only the flags given: an upgrade merges them over the stored ones). */
export function parseSettings(role: Role, raw: RawFlags): Settings {
  const s: Settings = {};
  const str = (k: string): string | undefined => {
    const v = raw[k];
    if (v === undefined || typeof v === 'boolean') return undefined;
    if (v.length > MAX_VALUE) throw invalid(`--${k}`, v, `at most ${MAX_VALUE} characters`);
    return v;
  };
  for (const k of Object.keys(raw)) {
    if (raw[k] !== undefined && !ROLE_FLAGS[role].includes(k)) {
      throw new InstallError('INVALID_INPUT', `--${k} does not apply to a ${role}`, `a ${role} takes: ${ROLE_FLAGS[role].map((f) => `--${f}`).join(' ') || 'no settings'}`);
    }
  }
  const v = {
    dataDir: str('data-dir'), cluster: str('cluster'), root: str('root'), token: str('token'), name: str('name'), location: str('location'),
    nmPort: str('netmanager-port'), pub: str('public-address'), runtimes: str('runtimes'), isolation: str('isolation'), namespace: str('namespace'),
    containerd: str('containerd'), report: str('report-interval'), tls: str('tls'), port: str('port'),
  };
  if (v.dataDir !== undefined) s.dataDir = validPath('--data-dir', v.dataDir);
  if (v.cluster !== undefined) {
    const a = validAddress('--cluster', v.cluster, 10100);
    s.cluster = a.host;
    s.clusterPort = a.port;
  }
  if (v.root !== undefined) {
    const a = validAddress('--root', v.root, 50052);
    s.root = a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
  }
  if (v.token !== undefined) s.token = validToken('--token', v.token, role === 'cluster' ? 'cluster' : 'worker');
  if (v.name !== undefined) s.name = validName('--name', v.name);
  if (v.location !== undefined) s.location = validLocation('--location', v.location);
  if (raw.netmanager !== undefined) {
    if (typeof raw.netmanager !== 'boolean') throw invalid('--netmanager', String(raw.netmanager), 'no value');
    s.netmanager = raw.netmanager;
  }
  if (v.nmPort !== undefined) s.netmanagerPort = validPort('--netmanager-port', v.nmPort);
  if (v.pub !== undefined) s.publicAddress = validHost('--public-address', v.pub);
  if (v.runtimes !== undefined) s.runtimes = validRuntimes('--runtimes', v.runtimes);
  if (v.isolation !== undefined) s.isolation = validChoice('--isolation', v.isolation, ['auto', 'on', 'off'] as const);
  if (v.namespace !== undefined) {
    if (!/^[a-z0-9][a-z0-9_-]{0,30}$/.test(v.namespace)) throw invalid('--namespace', v.namespace, 'lower-case letters, digits, "_" and "-" (at most 31)');
    s.namespace = v.namespace;
  }
  if (v.containerd !== undefined) s.containerd = validPath('--containerd', v.containerd);
  if (v.report !== undefined) s.reportInterval = validInt('--report-interval', v.report, 100, 3_600_000);
  if (v.tls !== undefined) s.tls = validChoice('--tls', v.tls, ['auto'] as const);
  if (v.port !== undefined) s.apiPort = validPort('--port', v.port);
  return s;
}

/** what must be known before a role can run (checked after merging over an earlier install) */
export function requireSettings(role: Role, s: Settings): void {
  const need = (ok: unknown, flag: string, why: string): void => {
    if (ok === undefined) throw new InstallError('INVALID_INPUT', `${flag} is required for a ${role}`, why);
  };
  if (role === 'worker') {
    need(s.cluster, '--cluster', 'the address of the cluster orchestrator the worker joins: --cluster <host>[:10100]');
    need(s.token, '--token', 'a worker join token: oak token create worker --cluster <name>');
  }
  if (role === 'cluster') {
    need(s.root, '--root', 'the address of the root: --root <host>[:50052]');
    need(s.token, '--token', 'a cluster join token: oak token create cluster --name <name>');
    need(s.name, '--name', 'the cluster name the token was created for: --name <name>');
  }
}

// ------------------------------------------------------------------------------ layout

export interface Layout {
  /** the file system root everything goes under (`/`, or an empty directory for tests) */
  prefix: string;
  /** <prefix>/opt/oak/<program> */
  base: string;
  /** <base>/current: the link to the active version */
  current: string;
  /** <base>/install.json (mode 0600: it holds the settings, join token included) */
  manifest: string;
  dataDir: string;
  /** <prefix>/etc/oak/<role>.env (mode 0600) */
  envFile: string;
  /** <prefix>/etc/systemd/system */
  unitDir: string;
  /** <prefix>/usr/local/bin */
  binDir: string;
}

export const join = (...parts: string[]): string => parts.join('/').replace(/\/+/g, '/').replace(/(.)\/$/, '$1');

export function layoutOf(role: Role, prefix: string, s: Settings): Layout {
  const base = join(prefix, 'opt/oak', PROGRAM_OF[role]);
  return {
    prefix,
    base,
    current: join(base, 'current'),
    manifest: join(base, 'install.json'),
    // a path the user gave is taken as it is; the default lives under the prefix
    dataDir: s.dataDir ?? join(prefix, 'var/lib/oak', role),
    envFile: join(prefix, 'etc/oak', `${role}.env`),
    unitDir: join(prefix, 'etc/systemd/system'),
    binDir: join(prefix, 'usr/local/bin'),
  };
}

// ------------------------------------------------------------------------------ services

/** One service of a role: its command line and environment, as run by systemd or by hand. */
export interface Service {
  unit: string;
  description: string;
  argv: string[];
  env: Record<string, string>;
  /** environment that holds secrets (join tokens): the environment file, never the unit or argv */
  secretEnv: Record<string, string>;
  /** root for the worker (cgroups, namespaces, containerd), else the system user */
  runAsRoot: boolean;
  after: string[];
}

export const DEFAULT_NETMANAGER_PORT = 6000;

export function servicesOf(role: Role, node: string, l: Layout, s: Settings, version: string): Service[] {
  const bin = (name: string): string => join(l.current, `${name}.mjs`);
  const opt = (flag: string, v: string | number | undefined): string[] => (v === undefined ? [] : [flag, String(v)]);
  const tokenEnv: Record<string, string> = s.token === undefined ? {} : { OAK_JOIN_TOKEN: s.token };
  const common = { env: { OAK_DATA_DIR: l.dataDir }, after: ['network-online.target'] };
  switch (role) {
    case 'worker': {
      const nmPort = s.netmanager ? (s.netmanagerPort ?? DEFAULT_NETMANAGER_PORT) : 0;
      const engine: Service = {
        ...common,
        unit: 'oak-worker.service',
        description: `oak worker (NodeEngine ${version})`,
        argv: [
          node, bin('NodeEngine'), '-a', s.cluster ?? '', '-p', String(s.clusterPort ?? 10100), '-n', String(nmPort), '--data-dir', l.dataDir,
          ...opt('--name', s.name), ...opt('--location', s.location), ...opt('--runtimes', s.runtimes), ...opt('--isolation', s.isolation),
          ...opt('--namespace', s.namespace), ...opt('--containerd', s.containerd), ...opt('--report-interval', s.reportInterval),
        ],
        secretEnv: tokenEnv,
        runAsRoot: true,
        after: ['network-online.target', 'containerd.service', ...(s.netmanager ? ['oak-netmanager.service'] : [])],
      };
      if (!s.netmanager) return [engine];
      const net: Service = {
        ...common,
        unit: 'oak-netmanager.service',
        description: `oak NetManager ${version} (overlay network of the worker)`,
        argv: [node, bin('NetManager'), '--port', String(nmPort), '--cluster-url', s.cluster ?? '', ...opt('--public-address', s.publicAddress)],
        secretEnv: {},
        runAsRoot: true,
      };
      return [net, engine];
    }
    case 'cluster':
      return [{
        ...common,
        unit: 'oak-cluster.service',
        description: `oak cluster orchestrator ${version}`,
        argv: [node, bin('oak-cluster'), '--root', s.root ?? '', '--name', s.name ?? '', ...opt('--location', s.location)],
        secretEnv: tokenEnv,
        runAsRoot: false,
      }];
    case 'root':
      return [{
        ...common,
        unit: 'oak-root.service',
        description: `oak root orchestrator ${version}`,
        argv: [node, bin('oak-root'), '--data-dir', l.dataDir, ...opt('--port', s.apiPort), ...opt('--tls', s.tls)],
        secretEnv: {},
        runAsRoot: false,
      }];
    case 'full':
      return [{
        ...common,
        unit: 'oak-full.service',
        description: `oak 1-DOC (oakd ${version}: root, cluster and worker)`,
        // a small young generation: less resident memory on small devices (as `make up`)
        argv: [
          node, '--max-semi-space-size=2', bin('oakd'), '--data-dir', l.dataDir, ...opt('--port', s.apiPort), ...opt('--worker-name', s.name),
          ...opt('--cluster-location', s.location), ...opt('--public-address', s.publicAddress), ...(s.netmanager === false ? ['--netmanager', 'off'] : []),
        ],
        secretEnv: {},
        runAsRoot: true,
        after: ['network-online.target', 'containerd.service'],
      }];
    case 'cli':
      return [];
  }
}

// ------------------------------------------------------------------------------ writers

/** characters a unit argument, an environment value or a printed shell word may hold unquoted */
const SAFE = /^[A-Za-z0-9._/:,=@+[\]-]+$/;

/** a value for a unit file or environment file: refused outright unless plain */
export function plain(what: string, v: string): string {
  if (v.length > 0 && v.length <= MAX_VALUE && SAFE.test(v)) return v;
  throw new InstallError('INVALID_INPUT', `refusing to write ${what} ${JSON.stringify(v.slice(0, 120))}: it holds characters outside [A-Za-z0-9._/:,=@+[]-]`, 'this is a bug of the validation or a hostile value; nothing was written');
}

/** a shell word: plain words as they are, anything else in single quotes */
export function shellWord(v: string): string {
  return SAFE.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`;
}

export interface UnitOptions {
  user?: string;
  envFile: string;
  workingDir: string;
}

/** the systemd unit of a service; every value passes plain() */
export function unitText(svc: Service, o: UnitOptions): string {
  const lines = [
    '# written by oak install (docs/deployment.md); oak uninstall removes it',
    '[Unit]',
    `Description=${svc.description.replace(/[^A-Za-z0-9 ().,:-]/g, '')}`,
    `After=${svc.after.map((a) => plain('After', a)).join(' ')}`,
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${svc.argv.map((a) => plain('an ExecStart argument', a)).join(' ')}`,
    ...Object.entries(svc.env).map(([k, v]) => `Environment=${plain('an environment name', k)}=${plain(`${k}`, v)}`),
    `EnvironmentFile=-${plain('EnvironmentFile', o.envFile)}`,
    `WorkingDirectory=${plain('WorkingDirectory', o.workingDir)}`,
    ...(o.user !== undefined ? [`User=${plain('User', o.user)}`, `Group=${plain('Group', o.user)}`, 'NoNewPrivileges=yes'] : []),
    'Restart=on-failure',
    'RestartSec=2',
    'LimitNOFILE=65536',
    // the instances of a worker are not the service's to kill: a restart or upgrade of the
    // NodeEngine must leave them running so that the new one re-adopts them
    ...(svc.runAsRoot ? ['KillMode=process'] : []),
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ];
  return lines.join('\n');
}

/** the environment file (secrets); KEY=value lines, values plain() */
export function envFileText(svc: Service[]): string {
  const all: Record<string, string> = {};
  for (const s of svc) Object.assign(all, s.secretEnv);
  return ['# written by oak install; mode 0600 (it holds the join token)', ...Object.entries(all).map(([k, v]) => `${plain('an environment name', k)}=${plain(k, v)}`), ''].join('\n');
}

/** the exact command line that runs a service by hand (--no-systemd), secrets from the environment file */
export function commandLine(svc: Service, envFile: string): string {
  const env = Object.entries(svc.env).map(([k, v]) => `${k}=${shellWord(v)}`);
  const withSecrets = Object.keys(svc.secretEnv).length > 0;
  const cmd = ['env', ...env, ...svc.argv.map(shellWord)].join(' ');
  return withSecrets ? `set -a; . ${shellWord(envFile)}; set +a; ${cmd}` : cmd;
}
