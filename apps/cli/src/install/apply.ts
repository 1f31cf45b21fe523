/**
 * `oak install` / `install.sh`, the part that touches the machine: copies an unpacked artifact to
 * <prefix>/opt/oak/<program>/<version>, switches the `current` link, creates the data dir (0700)
 * and the system user, writes the environment file and the systemd units that plan.ts builds,
 * enables and (re)starts them; `uninstall` takes all of it away again and says what it leaves.
 * Nothing is fetched: everything comes from the artifact directory.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  compareVersions, commandLine, envFileText, InstallError, join, layoutOf, parseSettings, plain, PROGRAM_OF, requireSettings, servicesOf, unitText,
  validPath, validVersion, type Layout, type RawFlags, type Role, type Service, type Settings,
} from './plan.ts';

/** oak-release.json at the top of every artifact (scripts/dist.mjs) */
export interface Release {
  program: string;
  version: string;
  arch: string;
  roles: Role[];
  bins: Record<string, string>;
}

/** install.json next to the versions: what uninstall and the next upgrade need to know */
export interface Installed {
  role: Role;
  program: string;
  version: string;
  previous?: string;
  settings: Settings;
  node: string;
  dataDir: string;
  envFile: string;
  units: string[];
  bin?: string;
  systemd: boolean;
  user?: string;
  createdUser: boolean;
}

export interface InstallRequest {
  artifactDir: string;
  role?: Role;
  prefix: string;
  flags: RawFlags;
  noSystemd: boolean;
  /** enable but do not (re)start the units (the NodeEngine of a fleet upgrade restarts itself) */
  noRestart?: boolean;
  allowDowngrade: boolean;
  node: string;
}

export interface Started {
  unit: string;
  argv: string[];
  env: Record<string, string>;
  envFile: string;
  commandLine: string;
}

export interface InstallResult {
  role: Role;
  version: string;
  previous?: string;
  upgrade: boolean;
  dataDir: string;
  units: string[];
  /** the services in start order, with the exact command line (what --no-systemd prints) */
  services: Started[];
  lines: string[];
}

export const SYSTEM_USER = 'oak';
const ARCH_OF: Partial<Record<string, string>> = { x64: 'amd64', arm64: 'arm64' };

export function readRelease(dir: string): Release {
  const f = join(dir, 'oak-release.json');
  if (!existsSync(f)) throw new InstallError('WRONG_ARTIFACT', `${dir} is not an unpacked oak artifact (no oak-release.json)`, 'unpack oak-<program>-<version>-linux-<arch>.tar.gz and run its install.sh, or give oak install --artifact <file>');
  const r = JSON.parse(readFileSync(f, 'utf8')) as Release;
  validVersion('the artifact version', r.version);
  return r;
}

export function readInstalled(l: Layout): Installed | undefined {
  return existsSync(l.manifest) ? (JSON.parse(readFileSync(l.manifest, 'utf8')) as Installed) : undefined;
}

function run(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    throw new InstallError('COMMAND_FAILED', `${cmd} ${args.join(' ')} failed: ${(e.stderr?.toString() ?? e.message).trim().slice(0, 400)}`, 'fix the cause and run the same command again (it is idempotent)');
  }
}

const succeeds = (cmd: string, args: string[]): boolean => {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

/** systemd is asked to act only on the real system (prefix `/`); a staged prefix just gets the files */
const onRealSystem = (prefix: string): boolean => prefix === '/';
const systemdRuns = (): boolean => existsSync('/run/systemd/system');

export function install(req: InstallRequest): InstallResult {
  const prefix = validPath('--prefix', req.prefix);
  const node = validPath('--node', req.node);
  const rel = readRelease(req.artifactDir);
  const role = req.role ?? rel.roles[0];
  if (role === undefined || !rel.roles.includes(role)) {
    throw new InstallError('WRONG_ARTIFACT', `this artifact (oak-${rel.program}) installs ${rel.roles.join(', ')}, not ${String(req.role)}`, `use the ${PROGRAM_OF[req.role ?? 'worker']} artifact for a ${String(req.role)}`);
  }
  const hostArch = ARCH_OF[process.arch];
  if (rel.arch !== hostArch) throw new InstallError('WRONG_ARTIFACT', `the artifact is for linux-${rel.arch}, this machine is ${hostArch ?? process.arch}`, `copy the linux-${hostArch ?? process.arch} artifact of the same version`);
  const given = parseSettings(role, req.flags);
  const probe = layoutOf(role, prefix, {});
  const before = readInstalled(probe);
  // an upgrade keeps what was given before (data dir, token, addresses) unless given anew
  const settings: Settings = { ...(before?.settings ?? {}), ...given };
  requireSettings(role, settings);
  const l = layoutOf(role, prefix, settings);
  if (before && compareVersions(rel.version, before.version) < 0 && !req.allowDowngrade) {
    throw new InstallError('DOWNGRADE', `${before.version} is installed; ${rel.version} is older`, 'a downgrade may not read the data a newer version wrote: pass --allow-downgrade to do it anyway');
  }
  const systemd = !req.noSystemd;
  if (systemd && onRealSystem(prefix) && !systemdRuns()) {
    throw new InstallError('SYSTEMD_UNAVAILABLE', 'systemd is not running here (no /run/systemd/system)', 'pass --no-systemd: the install then prints the command line to run instead');
  }
  const services = servicesOf(role, node, l, settings, rel.version);
  const asRoot = process.getuid?.() === 0;
  const wantsUser = services.some((s) => !s.runAsRoot) && onRealSystem(prefix) && asRoot;
  const lines: string[] = [];

  // 1. the files of this version, then the `current` link, switched in one rename
  mkdirSync(l.base, { recursive: true });
  const target = join(l.base, rel.version);
  const staging = join(l.base, `.${rel.version}.new`);
  rmSync(staging, { recursive: true, force: true });
  cpSync(req.artifactDir, staging, { recursive: true });
  rmSync(target, { recursive: true, force: true });
  renameSync(staging, target);
  const link = join(l.base, '.current.new');
  rmSync(link, { force: true });
  symlinkSync(rel.version, link);
  renameSync(link, l.current);
  lines.push(`${before ? (before.version === rel.version ? 'reinstalled' : 'upgraded') : 'installed'} oak-${rel.program} ${rel.version}${before && before.version !== rel.version ? ` (was ${before.version})` : ''} in ${target}`);

  // 2. the system user and the data dir (0700; kept by upgrades and by uninstall without --purge)
  let createdUser = before?.createdUser ?? false;
  if (wantsUser && !succeeds('id', ['-u', SYSTEM_USER])) {
    run('useradd', ['--system', '--home-dir', l.dataDir, '--no-create-home', '--shell', '/usr/sbin/nologin', SYSTEM_USER]);
    createdUser = true;
    lines.push(`created the system user ${SYSTEM_USER}`);
  }
  if (role !== 'cli') {
    mkdirSync(l.dataDir, { recursive: true, mode: 0o700 });
    chmodSync(l.dataDir, 0o700);
    lines.push(`data dir ${l.dataDir} (mode 0700${before ? ', kept' : ''})`);
  }
  if (wantsUser) {
    const uid = Number(execFileSync('id', ['-u', SYSTEM_USER], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', SYSTEM_USER], { encoding: 'utf8' }).trim());
    chownSync(l.dataDir, uid, gid);
  }

  // 3. environment file (the join token), units, the `oak` launcher
  mkdirSync(dirname(l.envFile), { recursive: true });
  writeFileSync(l.envFile, envFileText(services), { mode: 0o600 });
  chmodSync(l.envFile, 0o600);
  const units: string[] = [];
  if (systemd) {
    mkdirSync(l.unitDir, { recursive: true });
    for (const svc of services) {
      const path = join(l.unitDir, svc.unit);
      writeFileSync(path, unitText(svc, { envFile: l.envFile, workingDir: l.dataDir, ...(svc.runAsRoot || !wantsUser ? {} : { user: SYSTEM_USER }) }), { mode: 0o644 });
      units.push(path);
    }
    for (const old of before?.units ?? []) if (!units.includes(old)) rmSync(old, { force: true });
  }
  let bin: string | undefined;
  if (role === 'cli') {
    mkdirSync(l.binDir, { recursive: true });
    bin = join(l.binDir, 'oak');
    writeFileSync(bin, `#!/bin/sh\n# written by oak install; oak uninstall cli removes it\nexec ${plain('the node path', node)} ${plain('the cli path', join(l.current, 'oak.mjs'))} "$@"\n`, { mode: 0o755 });
    lines.push(`oak is ${bin}`);
  }

  // 4. keep the previous version for a rollback, drop older ones
  const previous = before && before.version !== rel.version ? before.version : before?.previous;
  for (const v of readdirSync(l.base)) {
    if (v === 'current' || v === 'install.json' || v === rel.version || v === previous) continue;
    rmSync(join(l.base, v), { recursive: true, force: true });
  }
  const installed: Installed = {
    role, program: rel.program, version: rel.version, ...(previous !== undefined ? { previous } : {}), settings, node, dataDir: l.dataDir, envFile: l.envFile,
    units, ...(bin !== undefined ? { bin } : {}), systemd, ...(wantsUser ? { user: SYSTEM_USER } : {}), createdUser,
  };
  writeFileSync(l.manifest, `${JSON.stringify(installed, null, 2)}\n`, { mode: 0o600 });
  chmodSync(l.manifest, 0o600);

  // 5. start it (or say how)
  const started = services.map((svc): Started => ({ unit: svc.unit, argv: svc.argv, env: { ...svc.env }, envFile: l.envFile, commandLine: commandLine(svc, l.envFile) }));
  if (services.length > 0) lines.push(...startLines(services, systemd, prefix, before !== undefined, started, req.noRestart === true));
  lines.push(`remove it with: oak uninstall ${role}${prefix === '/' ? '' : ` --prefix ${prefix}`} (or node ${join(l.current, 'oak-install.mjs')} uninstall ${role})`);
  return { role, version: rel.version, ...(previous !== undefined ? { previous } : {}), upgrade: before !== undefined, dataDir: l.dataDir, units, services: started, lines };
}

function startLines(services: Service[], systemd: boolean, prefix: string, restart: boolean, started: Started[], noRestart = false): string[] {
  const names = services.map((s) => s.unit);
  if (!systemd) {
    return [
      'not using systemd: start it with (as root, in this order)' + (restart ? '; a running one keeps the old version until you restart it: stop it and start this' : ''),
      ...started.map((s) => `  ${s.commandLine}`),
      ...(services.some((s) => s.unit === 'oak-worker.service') ? ['  (stopping the NodeEngine leaves its instances running: the new one re-adopts them)'] : []),
    ];
  }
  if (!onRealSystem(prefix)) return [`units written to ${join(prefix, 'etc/systemd/system')} (a staged prefix: systemctl was not called)`];
  run('systemctl', ['daemon-reload']);
  run('systemctl', ['enable', ...names]);
  if (noRestart) return [`enabled ${names.join(', ')}; not restarted (--no-restart): the running version stays until they restart`];
  // restart starts a stopped unit, and moves a running one to the new version (instances stay)
  for (const n of names) run('systemctl', ['restart', n]);
  return [`enabled and ${restart ? 'restarted' : 'started'} ${names.join(', ')}`, `check it: systemctl status ${names.join(' ')}; journalctl -u ${names[names.length - 1] ?? ''} -f`];
}

export interface UninstallResult {
  lines: string[];
  left: string[];
}

export function uninstall(role: Role, prefixIn: string, purge: boolean): UninstallResult {
  const prefix = validPath('--prefix', prefixIn);
  const l0 = layoutOf(role, prefix, {});
  const inst = readInstalled(l0);
  if (!inst) throw new InstallError('NOT_INSTALLED', `no ${role} is installed under ${prefix} (no ${l0.manifest})`, prefix === '/' ? 'give --prefix <dir> if it was installed into one' : 'check --prefix');
  const lines: string[] = [];
  const left: string[] = [];
  if (inst.systemd && onRealSystem(prefix) && inst.units.length > 0) {
    const names = inst.units.map((u) => u.slice(u.lastIndexOf('/') + 1));
    if (systemdRuns()) run('systemctl', ['disable', '--now', ...names]);
    lines.push(`stopped and disabled ${names.join(', ')}`);
  } else if (!inst.systemd && inst.role !== 'cli') {
    lines.push('installed without systemd: stop the process you started by hand (this does not)');
  }
  for (const u of inst.units) rmSync(u, { force: true });
  if (inst.systemd && onRealSystem(prefix) && systemdRuns() && inst.units.length > 0) run('systemctl', ['daemon-reload']);
  rmSync(inst.envFile, { force: true });
  if (inst.bin) rmSync(inst.bin, { force: true });
  rmSync(l0.base, { recursive: true, force: true });
  lines.push(`removed ${l0.base}, ${inst.envFile}${inst.units.length ? `, ${inst.units.join(', ')}` : ''}${inst.bin ? `, ${inst.bin}` : ''}`);
  if (inst.role !== 'cli') {
    // a worker's process instances work in <data dir>-work, outside the 0700 data dir
    const work = `${inst.dataDir}-work`;
    const state = [inst.dataDir, ...((inst.role === 'worker' || inst.role === 'full') && existsSync(work) ? [work] : [])];
    if (purge) {
      for (const d of state) rmSync(d, { recursive: true, force: true });
      lines.push(`removed the data dir ${state.join(' and ')}`);
    } else {
      left.push(...state);
      lines.push(`left the data dir ${state.join(' and ')} (identity and state: a new install reuses it; --purge removes it)`);
    }
  }
  if (inst.createdUser) {
    if (purge) {
      run('userdel', [SYSTEM_USER]);
      lines.push(`removed the system user ${SYSTEM_USER}`);
    } else {
      left.push(`user ${SYSTEM_USER}`);
      lines.push(`left the system user ${SYSTEM_USER} (--purge removes it)`);
    }
  }
  // directories the installer made, when nothing else is in them
  const dirs = [join(prefix, 'opt/oak'), join(prefix, 'etc/oak'), join(prefix, 'var/lib/oak')];
  if (!onRealSystem(prefix)) dirs.push(join(prefix, 'etc/systemd/system'), join(prefix, 'etc/systemd'), join(prefix, 'usr/local/bin'), join(prefix, 'usr/local'), join(prefix, 'usr'), join(prefix, 'opt'), join(prefix, 'etc'), join(prefix, 'var/lib'), join(prefix, 'var'));
  for (const d of dirs) {
    try {
      rmdirSync(d);
    } catch {
      // not empty (another role is installed, or it was there before) or absent: leave it
    }
  }
  lines.push(left.length === 0 ? 'nothing of it is left' : `left: ${left.join(', ')}`);
  return { lines, left };
}
