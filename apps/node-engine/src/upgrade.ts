/**
 * Fleet upgrades on the worker (issue 14, docs/deployment.md#fleet-upgrade). A command on
 * nodes/<id>/control/upgrade names a version and, for an upgrade, the artifact's sha256 and size.
 * The NodeEngine fetches the artifact from its own cluster only (HTTPS pinned to the cluster CA,
 * its own worker credentials; never a URL from the message), refuses bytes whose sha256 is not the
 * command's, unpacks it into its data dir, checks its manifest, and runs the artifact's own
 * installer over the install it runs from (settings, data dir and identity kept; the previous
 * version kept for a rollback); then it restarts itself (systemd, or by running its own command
 * line again), re-adopts its instances (they keep running) and reports the new version. A
 * rollback installs the kept previous version the same way.
 *
 * What it is doing is written to <data dir>/upgrade.json before it does it, and reported in every
 * registration and report, so the restarted process finishes the story: with `--upgrade-check
 * <executable>` it runs that check first and reports `failed` when it exits non-zero.
 *
 * Only a NodeEngine installed by `oak install` / install.sh (<prefix>/opt/oak/node-engine/<version>)
 * can do this; any other says why (self_upgrade_blocker) and refuses the command.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import type { ConnectionOptions } from 'node:tls';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { WorkerUpgradeCommand, WorkerUpgradeState } from '@oak/contracts';

const run = promisify(execFile);

/** where an installed NodeEngine lives (apps/cli/src/install/plan.ts layoutOf) */
export interface InstallLayout {
  prefix: string;
  /** <prefix>/opt/oak/node-engine */
  base: string;
  /** the install manifest's settings that matter here */
  systemd: boolean;
  units: string[];
  node: string;
  previous: string | undefined;
}

/**
 * The install this NodeEngine runs from, or why it cannot upgrade itself. `mainScript` is the
 * script node started (process.argv[1]).
 */
export function detectLayout(mainScript: string | undefined): { layout: InstallLayout } | { blocker: string } {
  if (mainScript === undefined) return { blocker: 'it runs inside another program' };
  let real: string;
  try {
    real = realpathSync(mainScript);
  } catch {
    return { blocker: `its script ${mainScript} cannot be resolved` };
  }
  const versionDir = dirname(real);
  const base = dirname(versionDir);
  const manifest = join(base, 'install.json');
  if (basename(real) !== 'NodeEngine.mjs' || basename(base) !== 'node-engine' || basename(dirname(base)) !== 'oak' || !existsSync(manifest) || !existsSync(join(versionDir, 'oak-install.mjs'))) {
    return { blocker: `it runs from ${versionDir}, not from an oak install (<prefix>/opt/oak/node-engine/<version>): install it with oak install worker or the artifact's install.sh` };
  }
  try {
    const m = JSON.parse(readFileSync(manifest, 'utf8')) as { systemd?: unknown; units?: unknown; node?: unknown; previous?: unknown; role?: unknown };
    if (m.role !== 'worker') return { blocker: `${manifest} is not a worker install` };
    return {
      layout: {
        prefix: dirname(dirname(dirname(base))),
        base,
        systemd: m.systemd === true,
        units: Array.isArray(m.units) ? m.units.filter((u): u is string => typeof u === 'string').map((u) => basename(u)) : [],
        node: typeof m.node === 'string' ? m.node : process.execPath,
        previous: typeof m.previous === 'string' ? m.previous : undefined,
      },
    };
  } catch {
    return { blocker: `${manifest} cannot be read` };
  }
}

export interface SelfUpgradeDeps {
  /** the install it runs from (detectLayout), or why it has none */
  layout: InstallLayout | undefined;
  blocker: string | undefined;
  /** stops this NodeEngine and starts the installed version (instances keep running) */
  restart: (layout: InstallLayout) => Promise<void>;
}

export interface UpgraderOptions {
  dataDir: string;
  /** the running version */
  version: string;
  /** linux arch names of the artifacts (amd64, arm64) */
  arch: string;
  self: SelfUpgradeDeps | undefined;
  /** an executable run after restarting into a new version; non-zero: the upgrade failed */
  check: string | undefined;
  /** the artifact's bytes from the cluster */
  download: (sha256: string, size: number) => Promise<Buffer>;
  /** the state changed: report it now */
  changed: () => void;
  log: { info(m: string): void; warn(m: string): void };
}

/** the file that carries the state across the restart */
const STATE_FILE = 'upgrade.json';

export class Upgrader {
  readonly #o: UpgraderOptions;
  #state: WorkerUpgradeState | undefined;
  #busy: Promise<void> = Promise.resolve();

  constructor(o: UpgraderOptions) {
    this.#o = o;
    try {
      this.#state = JSON.parse(readFileSync(join(o.dataDir, STATE_FILE), 'utf8')) as WorkerUpgradeState;
    } catch {
      this.#state = undefined;
    }
  }

  get state(): WorkerUpgradeState | undefined {
    return this.#state;
  }

  get blocker(): string | null {
    return this.#o.self === undefined ? 'it runs inside another program (oakd, a test)' : (this.#o.self.blocker ?? null);
  }

  async #set(s: Omit<WorkerUpgradeState, 'at'>): Promise<void> {
    const state: WorkerUpgradeState = { ...s, detail: s.detail.slice(0, 1024), at: Date.now() };
    this.#state = state;
    const f = join(this.#o.dataDir, STATE_FILE);
    await writeFile(`${f}.tmp`, `${JSON.stringify(state)}\n`, { mode: 0o600 });
    await rename(`${f}.tmp`, f);
    this.#o.changed();
  }

  /** After a start: finish what the previous process began (the check, then done or failed). */
  afterStart(): Promise<void> {
    return this.#serial(async () => {
      const s = this.#state;
      if (s === undefined || s.phase !== 'restarting') return;
      if (this.#o.version !== s.version) {
        await this.#set({ ...s, phase: 'failed', detail: `restarted, but runs ${this.#o.version}, not ${s.version}` });
        return;
      }
      const check = this.#o.check;
      if (s.action === 'upgrade' && check !== undefined) {
        try {
          await run(check, [], { timeout: 60_000, env: { ...process.env, OAK_UPGRADE_VERSION: s.version } });
        } catch (err) {
          const e = err as { code?: unknown; stderr?: string; message: string };
          await this.#set({ ...s, phase: 'failed', detail: `the upgrade check ${check} failed (${typeof e.code === 'number' ? `exit ${e.code}` : e.message.slice(0, 200)})${e.stderr ? `: ${e.stderr.trim().slice(-300)}` : ''}` });
          this.#o.log.warn(`upgrade to ${s.version}: the upgrade check ${check} failed`);
          return;
        }
      }
      await this.#set({ ...s, phase: 'done', detail: `${s.action === 'upgrade' ? 'upgraded to' : 'rolled back to'} ${s.version}` });
      this.#o.log.info(`${s.action === 'upgrade' ? 'upgraded to' : 'rolled back to'} ${s.version} (rollout ${s.rollout_id})`);
    });
  }

  /** One command from the cluster (commands are handled one at a time, in order). */
  handle(cmd: WorkerUpgradeCommand): Promise<void> {
    return this.#serial(() => this.#handle(cmd));
  }

  #serial(fn: () => Promise<void>): Promise<void> {
    const next = this.#busy.then(fn).catch((err: unknown) => this.#o.log.warn(`upgrade: ${err instanceof Error ? err.message : String(err)}`));
    this.#busy = next;
    return next;
  }

  async #handle(cmd: WorkerUpgradeCommand): Promise<void> {
    const base = { rollout_id: cmd.rollout_id, action: cmd.action, version: cmd.version };
    const cur = this.#state;
    // the same command again (resent by the root while it waited): say where it stands
    if (cur !== undefined && cur.rollout_id === cmd.rollout_id && cur.action === cmd.action && cur.version === cmd.version && cur.phase !== 'failed') {
      this.#o.changed();
      return;
    }
    const self = this.#o.self;
    if (self === undefined || self.layout === undefined) {
      await this.#set({ ...base, phase: 'refused', detail: `cannot upgrade itself: ${this.blocker ?? 'no install layout'}` });
      return;
    }
    const layout = self.layout;
    const current = this.#installedVersion(layout);
    if (this.#o.version === cmd.version && current === cmd.version) {
      await this.#set({ ...base, phase: 'done', detail: `already runs ${cmd.version}` });
      return;
    }
    try {
      if (current !== cmd.version) {
        if (cmd.action === 'upgrade') await this.#install(cmd, layout);
        else await this.#rollback(cmd, layout);
      }
    } catch (err) {
      const refused = err instanceof RefusedError;
      await this.#set({ ...base, phase: refused ? 'refused' : 'failed', detail: err instanceof Error ? err.message : String(err) });
      return;
    }
    // persisted before the restart: the new process reads it and finishes
    await this.#set({ ...base, phase: 'restarting', detail: `installed ${cmd.version}, restarting` });
    this.#o.log.info(`${cmd.action === 'upgrade' ? 'upgrade' : 'rollback'} to ${cmd.version}: installed, restarting (instances keep running)`);
    await self.restart(layout);
  }

  #installedVersion(l: InstallLayout): string | undefined {
    try {
      return readlinkSync(join(l.base, 'current'));
    } catch {
      return undefined;
    }
  }

  async #install(cmd: WorkerUpgradeCommand, l: InstallLayout): Promise<void> {
    const base = { rollout_id: cmd.rollout_id, action: cmd.action, version: cmd.version };
    if (cmd.sha256 === undefined || cmd.size === undefined) throw new RefusedError('the command names no artifact');
    await this.#set({ ...base, phase: 'downloading', detail: `fetching ${cmd.size} bytes from the cluster` });
    const data = await this.#o.download(cmd.sha256, cmd.size);
    const sum = createHash('sha256').update(data).digest('hex');
    if (sum !== cmd.sha256 || data.length !== cmd.size) throw new RefusedError(`the artifact from the cluster has sha256 ${sum} (${data.length} bytes), not the ${cmd.sha256} the command named: not installed`);
    await this.#set({ ...base, phase: 'installing', detail: `unpacking and installing ${cmd.version}` });
    const work = join(this.#o.dataDir, 'upgrade');
    await rm(work, { recursive: true, force: true });
    await mkdir(work, { recursive: true, mode: 0o700 });
    try {
      const tgz = join(work, 'artifact.tar.gz');
      await writeFile(tgz, data, { mode: 0o600 });
      await run('tar', ['-xzf', tgz, '-C', work, '--no-same-owner'], { timeout: 120_000 });
      const name = `oak-node-engine-${cmd.version}-linux-${this.#o.arch}`;
      const dirs = (await readdir(work)).filter((f) => f !== 'artifact.tar.gz');
      if (dirs.length !== 1 || dirs[0] !== name) throw new RefusedError(`the artifact holds ${dirs.slice(0, 3).join(', ')}, not ${name}`);
      const rel = JSON.parse(await readFile(join(work, name, 'oak-release.json'), 'utf8')) as { program?: unknown; version?: unknown; arch?: unknown };
      if (rel.program !== 'node-engine' || rel.version !== cmd.version || rel.arch !== this.#o.arch) throw new RefusedError(`the artifact's manifest says ${String(rel.program)} ${String(rel.version)} ${String(rel.arch)}, not node-engine ${cmd.version} ${this.#o.arch}`);
      await this.#runInstaller(l, join(work, name), false);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  async #rollback(cmd: WorkerUpgradeCommand, l: InstallLayout): Promise<void> {
    await this.#set({ rollout_id: cmd.rollout_id, action: cmd.action, version: cmd.version, phase: 'installing', detail: `going back to ${cmd.version}` });
    const dir = join(l.base, cmd.version);
    if (!existsSync(join(dir, 'oak-install.mjs'))) throw new Error(`version ${cmd.version} is not kept here (${l.base} keeps the previous version only)`);
    await this.#runInstaller(l, dir, true);
  }

  async #runInstaller(l: InstallLayout, artifactDir: string, downgrade: boolean): Promise<void> {
    const args = [join(artifactDir, 'oak-install.mjs'), 'worker', '--prefix', l.prefix, '--artifact-dir', artifactDir, '--node', l.node, '--no-restart', '--json'];
    if (!l.systemd) args.push('--no-systemd');
    if (downgrade) args.push('--allow-downgrade');
    try {
      await run(l.node, args, { timeout: 120_000 });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`the installer failed: ${(e.stderr ?? e.message).trim().slice(0, 600)}`);
    }
  }
}

/** the command is refused as it stands (nothing was changed) */
class RefusedError extends Error {}

/** GET the artifact from the cluster: HTTPS pinned to the cluster CA, the worker's own credentials, at most `size` bytes. */
export function downloadArtifact(url: string, tls: ConnectionOptions, user: string, password: string, size: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(url), { method: 'GET', headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` }, ...tls, timeout: 60_000 }, (res) => {
      const parts: Buffer[] = [];
      let got = 0;
      res.on('data', (d: Buffer) => {
        got += d.length;
        if (got > size) {
          req.destroy(new Error(`the cluster sent more than the ${size} bytes announced`));
          return;
        }
        parts.push(d);
      });
      res.on('end', () => {
        const body = Buffer.concat(parts);
        if ((res.statusCode ?? 500) !== 200) reject(new Error(`the cluster answered ${res.statusCode ?? '?'}: ${body.toString('utf8').slice(0, 300)}`));
        else resolve(body);
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('the artifact download timed out')));
    req.on('error', reject);
    req.end();
  });
}
