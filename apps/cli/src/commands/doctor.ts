/**
 * `oak doctor`: checks this machine and the CLI's setup, one ✓/⚠/✗ line per check with what to
 * do about each problem. Exit 1 when an essential check fails.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import type { Command } from 'commander';
import { unixSocketAnswers } from '@oak/sysinfo';
import { Api, networkReason } from '../client.ts';
import { session, type Session } from '../context.ts';
import { isServerError, ReportedError, UnreachableError } from '../errors.ts';
import { emit, paint } from '../output.ts';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface Check {
  check: string;
  status: CheckStatus;
  detail: string;
  fix?: string;
}

export const CONTAINERD_SOCKETS = ['/run/containerd/containerd.sock', '/run/oak/containerd/containerd.sock'];
/** SPEC §1 default ports (the contracts' DEFAULT_PORTS, written out so that `oak --help` need not load contracts). */
export const PORTS: { port: number; what: string }[] = [
  { port: 10000, what: 'root API' },
  { port: 10100, what: 'cluster API' },
  { port: 10003, what: 'MQTT broker' },
  { port: 50052, what: 'root-cluster link' },
];


function onPath(bin: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** 'free', 'in use', or an error code. */
function portState(port: number): Promise<'free' | 'in use' | string> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EADDRINUSE' ? 'in use' : (err.code ?? err.message)));
    srv.listen({ port, host: '0.0.0.0', exclusive: true }, () => srv.close(() => resolve('free')));
  });
}

/** Sends an MQTT 3.1.1 CONNECT and reads the CONNACK: 'accepted', 'refused <rc>', or why not. */
export function mqttProbe(host: string, port: number, timeoutMs = 1500): Promise<{ ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    const id = Buffer.from(`oak-doctor-${process.pid}`);
    const variable = Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x0a]);
    const payload = Buffer.concat([Buffer.from([id.length >> 8, id.length & 0xff]), id]);
    const packet = Buffer.concat([Buffer.from([0x10, variable.length + payload.length]), variable, payload]);
    const s = connect({ host, port });
    let done = false;
    const finish = (r: { ok: boolean; detail: string }): void => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      resolve(r);
    };
    const t = setTimeout(() => finish({ ok: false, detail: 'no MQTT answer in time' }), timeoutMs);
    s.once('connect', () => s.write(packet));
    s.once('data', (b: Buffer) => {
      if (b[0] !== 0x20) return finish({ ok: false, detail: 'something answers, but not MQTT' });
      const rc = b[3] ?? 255;
      if (rc === 0) return finish({ ok: true, detail: 'broker accepts connections' });
      finish({ ok: true, detail: `broker answers (refused an anonymous client, code ${rc}: it needs credentials)` });
    });
    s.once('error', (err) => finish({ ok: false, detail: networkReason(err) }));
  });
}

async function rootHealth(root: string): Promise<{ ok: boolean; detail: string; oak: boolean }> {
  try {
    const res = await fetch(`${root}/healthz`, { signal: AbortSignal.timeout(3000) });
    const body = (await res.json().catch(() => undefined)) as { status?: string; store?: string; uptime_s?: number; error?: { message?: string } } | undefined;
    if (res.ok && body?.status === 'ok') return { ok: true, oak: true, detail: `healthy at ${root} (store ${body.store ?? '?'}, up ${Math.round(body.uptime_s ?? 0)}s)` };
    if (body?.error?.message !== undefined) return { ok: false, oak: true, detail: `answers but is not healthy: ${body.error.message}` };
    return { ok: false, oak: false, detail: `${root}/healthz answered HTTP ${res.status}: not an oak root?` };
  } catch (err) {
    return { ok: false, oak: false, detail: `cannot reach ${root} (${networkReason(err)})` };
  }
}

function isLocal(root: string): boolean {
  try {
    const h = new URL(root).hostname;
    return ['127.0.0.1', 'localhost', '::1', '[::1]', '0.0.0.0'].includes(h) || h.startsWith('127.');
  } catch {
    return false;
  }
}

async function machineChecks(): Promise<Check[]> {
  const out: Check[] = [];
  // containerd
  const answering: string[] = [];
  for (const sock of CONTAINERD_SOCKETS) if (await unixSocketAnswers(sock, 700)) answering.push(sock);
  if (answering.length > 0) out.push({ check: 'containerd', status: 'ok', detail: `answers at ${answering.join(', ')}` });
  else if (onPath('containerd') !== undefined) {
    out.push({ check: 'containerd', status: 'warn', detail: `installed but no socket answers (${CONTAINERD_SOCKETS.join(', ')})`, fix: "oak up starts its own when run as root; or start it: systemctl start containerd" });
  } else {
    out.push({ check: 'containerd', status: 'fail', detail: 'not installed and no socket answers', fix: 'as root: apt-get install containerd runc' });
  }
  // runc
  const runc = onPath('runc');
  out.push(runc !== undefined ? { check: 'runc', status: 'ok', detail: runc } : { check: 'runc', status: 'fail', detail: 'not found on PATH', fix: 'as root: apt-get install runc' });
  // cgroups
  const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
  const v1 = !v2 && existsSync('/sys/fs/cgroup/memory');
  if (!v2 && !v1) out.push({ check: 'cgroups', status: 'fail', detail: 'no cgroup filesystem under /sys/fs/cgroup', fix: 'mount cgroup2 on /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup)' });
  else {
    const controllers = v2 ? readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8').trim().split(/\s+/) : ['memory', 'cpu'];
    const missing = ['cpu', 'memory'].filter((c) => !controllers.includes(c));
    let writable = true;
    let why = '';
    try {
      accessSync('/sys/fs/cgroup', constants.W_OK);
    } catch (err) {
      writable = false;
      why = (err as NodeJS.ErrnoException).code ?? '';
    }
    const version = v2 ? 'v2' : 'v1';
    if (!writable) {
      out.push({
        check: 'cgroups',
        status: 'fail',
        detail: `${version}, not writable (${why === 'EROFS' ? 'read-only mount' : why === 'EACCES' ? 'needs root' : why})`,
        fix: why === 'EROFS' ? 'in a container: run it with --cgroupns=private and a writable /sys/fs/cgroup' : 'run oak up / NodeEngine as root',
      });
    } else if (missing.length > 0) {
      out.push({ check: 'cgroups', status: 'warn', detail: `${version}, writable, controllers ${missing.join(', ')} missing`, fix: 'enable them: echo "+cpu +memory" > /sys/fs/cgroup/cgroup.subtree_control' });
    } else out.push({ check: 'cgroups', status: 'ok', detail: `${version}, writable, cpu and memory controllers` });
  }
  // ports
  const health = await rootHealth('http://127.0.0.1:10000');
  for (const { port, what } of PORTS) {
    const st = await portState(port);
    if (st === 'free') {
      out.push({ check: `port ${port}`, status: 'ok', detail: `free (${what})` });
      continue;
    }
    if (st !== 'in use') {
      out.push({ check: `port ${port}`, status: 'warn', detail: `cannot test (${st})` });
      continue;
    }
    let byOak = false;
    if (port === 10000) byOak = health.oak;
    else if (port === 10003) byOak = (await mqttProbe('127.0.0.1', port)).ok;
    else if (port === 10100) byOak = await fetch('http://127.0.0.1:10100/healthz', { signal: AbortSignal.timeout(2000) }).then((r) => r.status < 500, () => false);
    else byOak = health.oak;
    out.push(
      byOak
        ? { check: `port ${port}`, status: 'ok', detail: `in use by oak (${what})` }
        : { check: `port ${port}`, status: 'fail', detail: `in use by something else (oak's ${what} needs it)`, fix: `see what listens: ss -ltnp 'sport = :${port}'; stop it or give oak another port` },
    );
  }
  // broker
  const mqttUrl = process.env.MQTT_URL;
  let host = '127.0.0.1';
  let mport = 10003;
  if (mqttUrl !== undefined && mqttUrl !== '') {
    try {
      const u = new URL(mqttUrl);
      host = u.hostname;
      mport = u.port === '' ? 1883 : Number(u.port);
    } catch {
      out.push({ check: 'MQTT broker', status: 'fail', detail: `MQTT_URL is not a URL: ${mqttUrl}`, fix: 'write it like mqtt://127.0.0.1:1883' });
    }
  }
  const probe = await mqttProbe(host, mport);
  out.push(
    probe.ok
      ? { check: 'MQTT broker', status: 'ok', detail: `${host}:${mport}: ${probe.detail}` }
      : {
          check: 'MQTT broker',
          status: 'warn',
          detail: `${host}:${mport}: ${probe.detail}`,
          fix: mqttUrl !== undefined && mqttUrl !== '' ? 'start the broker MQTT_URL points at' : 'fine before oak up (the 1-DOC embeds a broker); a cluster needs one (MQTT_URL or its own)',
        },
  );
  return out;
}

async function clientChecks(s: Session): Promise<Check[]> {
  const out: Check[] = [];
  const health = await rootHealth(s.root.url);
  if (!health.ok) {
    out.push({
      check: 'root',
      status: 'fail',
      detail: health.detail,
      fix: `start it (oak up, or oak-root), or point the CLI at it: oak config set root_url <url> (now ${s.root.url}, from ${s.root.source})`,
    });
    return out;
  }
  out.push({ check: 'root', status: 'ok', detail: health.detail });
  const token = process.env.OAK_TOKEN ?? s.config.token;
  if (token === undefined || token === '') {
    out.push({ check: 'login', status: 'fail', detail: 'not logged in', fix: 'oak login' });
    return out;
  }
  try {
    const api = new Api(s.root.url, { config: s.config, configPath: s.configPath });
    const clusters = await api.clusters();
    out.push({ check: 'login', status: 'ok', detail: `logged in${s.config.username !== undefined ? ` as ${s.config.username}` : ''}` });
    const active = clusters.filter((c) => c.status === 'ACTIVE');
    const workers = active.reduce((n, c) => n + (c.resources?.workers ?? 0), 0);
    out.push(
      active.length > 0
        ? { check: 'clusters', status: workers > 0 ? 'ok' : 'warn', detail: `${active.length} active, ${workers} worker${workers === 1 ? '' : 's'}`, ...(workers > 0 ? {} : { fix: 'start a NodeEngine against the cluster' }) }
        : { check: 'clusters', status: 'warn', detail: 'none connected: instances will wait in REQUESTED', fix: 'start a cluster (oak-cluster with SYSTEM_MANAGER_URL), or use the 1-DOC: oak up' },
    );
  } catch (err) {
    if (err instanceof UnreachableError) out.push({ check: 'login', status: 'fail', detail: err.message });
    else if (isServerError(err)) out.push({ check: 'login', status: 'fail', detail: `${err.message} (${err.code})`, fix: 'oak login' });
    else throw err;
  }
  return out;
}

const SYMBOL: Record<CheckStatus, [string, 'green' | 'yellow' | 'red']> = { ok: ['✓', 'green'], warn: ['⚠', 'yellow'], fail: ['✗', 'red'] };

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('check this machine and the CLI setup, and say what to fix')
    .option('--client', 'only check what the CLI needs (root, login), not this machine')
    .addHelpText(
      'after',
      `
Checks: node version; containerd socket (${CONTAINERD_SOCKETS.join(' or ')}) answering;
runc; cgroup version and writability; ports ${PORTS.map((p) => p.port).join(', ')} free or used by oak;
MQTT broker (MQTT_URL, else 127.0.0.1:10003); the root's /healthz; the stored login.
Machine checks only warn when the root is on another machine. Exit 1 when a check fails (✗).

Examples:
  $ oak doctor
  $ oak doctor --client -o json`,
    )
    .action(async (opts: { client?: boolean }, cmd: Command) => {
      const s = session(cmd);
      const checks: Check[] = [];
      const major = Number(process.versions.node.split('.')[0]);
      checks.push(major >= 20 ? { check: 'node', status: 'ok', detail: `v${process.versions.node}` } : { check: 'node', status: 'fail', detail: `v${process.versions.node}`, fix: 'install Node.js 20 or newer' });
      if (opts.client !== true) {
        const local = isLocal(s.root.url);
        for (const c of await machineChecks()) {
          if (!local && c.status === 'fail') checks.push({ ...c, status: 'warn', detail: `${c.detail} (only needed to run oak here)` });
          else checks.push(c);
        }
      }
      checks.push(...(await clientChecks(s)));
      const failed = checks.filter((c) => c.status === 'fail');
      await emit(s.ui, { ok: failed.length === 0, checks }, () => {
        const w = Math.max(...checks.map((c) => c.check.length));
        const lines = checks.map((c) => {
          const [sym, colour] = SYMBOL[c.status];
          const head = `${paint(s.ui.color, colour, sym)} ${c.check.padEnd(w)}  ${c.detail}`;
          return c.fix !== undefined && c.status !== 'ok' ? `${head}\n  ${''.padEnd(w)}  ${paint(s.ui.color, 'dim', 'fix:')} ${c.fix}` : head;
        });
        lines.push('', failed.length === 0 ? 'all essential checks passed' : `${failed.length} check${failed.length === 1 ? '' : 's'} failed`);
        return lines.join('\n');
      });
      if (failed.length > 0) throw new ReportedError('doctor found problems');
    });
}
