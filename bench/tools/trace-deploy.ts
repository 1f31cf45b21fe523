/**
 * Where the time of a process deploy goes: a 1-DOC in this process (--netmanager off), N process
 * deploys one after the other, each with the marks of `globalThis.__oakTrace` (set here) as ms
 * since the POST, p50 per mark, plus the CPU time of this process per deploy.
 *
 * The marks are not in the code: apply them for a run and take them out again
 *   git apply bench/tools/trace-points.patch
 *   node --import tsx bench/tools/trace-deploy.ts [rounds]     (TRACE_VERBOSE=1: every round)
 *   git apply -R bench/tools/trace-points.patch
 * (root: the reconciler's shell, reconcile/shell.ts; the cluster, cluster.ts; the NodeEngine's deploy,
 * engine.ts; add marks elsewhere by hand when needed). Without the patch only the total is printed.
 * TRACE_WINDOWS=1 prints the deploys' time windows (µs of the monotonic clock, the time base of
 * --cpu-prof), to read a profile of the deploys alone. A round waits for the worker's UNDEPLOYED
 * of the previous instance before the next POST.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { ApplicationDoc, InstanceDoc, ServiceDoc } from '@oak/contracts';
import { startContainerd, freePort, tmpDir, waitFor } from '@oak/testkit';
import { parseConfig } from '../../apps/oakd/src/config.ts';
import { startOakd } from '../../apps/oakd/src/oakd.ts';
import { removeInstanceNetwork } from '../../apps/node-engine/src/network.ts';

import { readdirSync, readFileSync } from 'node:fs';
/** `/bin/sleep 600` processes in this containerd namespace's cgroups (what the service runs) */
function sleepers(ns: string): number {
  let n = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8') === '/bin/sleep\u0000600\u0000' && readFileSync(`/proc/${d}/cgroup`, 'utf8').includes(`/${ns}/`)) n++;
    } catch { /* gone */ }
  }
  return n;
}
const ROUNDS = Number(process.argv[2] ?? 20);
const marks: [string, number][] = [];
(globalThis as { __oakTrace?: (l: string) => void }).__oakTrace = (l) => { marks.push([l, performance.now()]); };

const ctd = await startContainerd();
const dir = await tmpDir('oak-trace');
const port = await freePort();
const extra = (process.env.TRACE_OAKD_FLAGS ?? '').split(' ').filter(Boolean);
const cfg = parseConfig(['--host', '127.0.0.1', '--port', String(port), '--link-port', String(await freePort()),
  '--cluster-port', String(await freePort()), '--mqtt-port', String(await freePort()),
  '--data-dir', join(dir.path, 'oakd'), '--containerd', ctd.socket, '--namespace', ctd.namespace,
  '--report-interval', '500', '--log-level', 'warn', '--netmanager', 'off', ...extra], {});
if (cfg === 'help') throw new Error('help');
cfg.adminPassword = 'trace-secret-1234';
const oakd = await startOakd(cfg, () => undefined);
const base = `http://127.0.0.1:${port}`;
let token = '';
const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
  const res = await fetch(base + path, { method, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body === undefined ? null : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path} ${res.status} ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
};
try {
  token = (await call<{ token: string }>('POST', '/api/auth/login', { username: 'Admin', password: cfg.adminPassword })).token;
  await waitFor(async () => ((await call<{ resources: { workers: number } | null }[]>('GET', '/api/clusters/active'))[0]?.resources?.workers === 1 ? true : undefined), { timeoutMs: 20_000 });
  const created = await call<ApplicationDoc[]>('POST', '/api/application/', { sla_version: 'v2.0', customerID: 'Admin', applications: [{ application_name: 'trace', application_namespace: 'bench', application_desc: 'd', microservices: [{ microservice_name: 'svc', microservice_namespace: 'bench', virtualization: 'process', code: '/bin/sleep', cmd: ['600'], memory: 32, vcpus: 0.1 }] }] });
  const [svc] = await call<ServiceDoc[]>('GET', `/api/services/${created[0]!.applicationID}`);
  if (!svc) throw new Error('no svc');
  // SSE
  const ac = new AbortController();
  const res = await fetch(`${base}/api/events?types=instance&token=${encodeURIComponent(token)}`, { headers: { accept: 'text/event-stream' }, signal: ac.signal });
  let onRunning: ((n: number) => void) | undefined;
  void (async () => {
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += value;
        let cut: number;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
          const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
          if (!data) continue;
          const e = JSON.parse(data) as { type: string; instance: { instance_number: number; status: string } };
          if (e.type === 'instance' && e.instance.status === 'RUNNING') onRunning?.(e.instance.instance_number);
        }
      }
    } catch { /* closed */ }
  })();
  const table = new Map<string, number[]>();
  const skip = /information|resources|bus [^:]*: in control\/deploy$/;
  const totals: number[] = [];
  const bare: number[] = [];
  const cpus: number[] = [];
  const undeploys: number[] = [];
  /** [start, end] of each measured deploy, µs of the monotonic clock (the time base of --cpu-prof) */
  const windows: [number, number][] = [];
  let loopStart = 0n;
  for (let i = 0; i < ROUNDS; i++) {
    if (i === 2) loopStart = process.hrtime.bigint() / 1000n;
    process.stderr.write(`round ${i}\n`);
    const tb = performance.now();
    const ch = spawn('/bin/sleep', ['600'], { stdio: 'ignore' });
    await new Promise((r) => ch.once('spawn', r));
    bare.push(performance.now() - tb);
    ch.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 50));
    marks.length = 0;
    const cpu0 = process.cpuUsage();
    const h0 = process.hrtime.bigint() / 1000n;
    const t0 = performance.now();
    let n = -1;
    const running = new Promise<void>((r) => { onRunning = (k) => { if (k === n || n === -1) r(); }; });
    const inst = await call<InstanceDoc>('POST', `/api/service/${svc.microserviceID}/instance`);
    n = inst.instance_number;
    await Promise.race([running, new Promise((_, rej) => setTimeout(() => rej(new Error(`round ${i}: no RUNNING event within 20 s; marks: ${marks.map(([l]) => l).join(', ')}`)), 20_000))]);
    const t1 = performance.now();
    if (i >= 2) windows.push([Number(h0), Number(process.hrtime.bigint() / 1000n)]);
    const cpu1 = process.cpuUsage(cpu0);
    if (i >= 2) cpus.push((cpu1.user + cpu1.system) / 1000);
    marks.push(['SSE RUNNING', t1]);
    if (i >= 2) {
      totals.push(t1 - t0);
      const seen = new Set<string>();
      for (const [l, at] of marks) {
        if (seen.has(l) || (skip.test(l) && !l.includes('deploy'))) continue;
        seen.add(l);
        if (!table.has(l)) table.set(l, []);
        table.get(l)!.push(at - t0);
      }
    }
    if (process.env.TRACE_VERBOSE) console.log(marks.map(([l, at]) => `${(at - t0).toFixed(1)} ${l}`).join('\n') + '\n');
    const cut = marks.length;
    await call('DELETE', `/api/service/${svc.microserviceID}/instance/${n}`);
    // the worker's UNDEPLOYED must be out before the number is used again (else it lands on the new row)
    // (without the trace points: the processes gone and a pause)
    if (cut > 1) await waitFor(() => (marks.slice(cut).some(([l]) => l === 'ne: publish UNDEPLOYED') ? true : undefined), { timeoutMs: 20_000, intervalMs: 5 });
    else await new Promise((r) => setTimeout(r, 300));
    await waitFor(async () => ((await call<ServiceDoc>('GET', `/api/service/${svc.microserviceID}`)).instance_list.some((x) => x.instance_number === n) ? undefined : true), { timeoutMs: 20_000, intervalMs: 20 });
    const tu = performance.now();
    await waitFor(() => (sleepers(ctd.namespace) === 0 ? true : undefined), { timeoutMs: 10_000, intervalMs: 10 }).catch((err: unknown) => { console.log(marks.filter(([l]) => !/information|resources/.test(l)).map(([l, at]) => `${(at - t0).toFixed(1)} ${l}`).join('\n')); throw err; });
    undeploys.push(performance.now() - tu);
    await new Promise((r) => setTimeout(r, 100));
  }
  console.log(`loop hrtime us ${loopStart} ${process.hrtime.bigint() / 1000n}`);
  if (process.env.TRACE_WINDOWS) console.log(`windows ${JSON.stringify(windows)}`);
  const med = (v: number[]): number => { const s = [...v].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] ?? NaN; };
  const rows = [...table.entries()].map(([l, v]) => [l, med(v), v.length] as const).sort((a, b) => a[1] - b[1]);
  for (const [l, m, k] of rows) console.log(`${m.toFixed(1).padStart(7)} ms  ${l}${k < totals.length ? ` (${k}/${totals.length})` : ''}`);
  console.log(`deploy p50 ${med(totals).toFixed(1)} ms, bare spawn p50 ${med(bare).toFixed(2)} ms, ratio ${(med(totals) / med(bare)).toFixed(1)}; CPU of this process per deploy p50 ${med(cpus).toFixed(1)} ms; load ${(await import('node:os')).loadavg()[0]?.toFixed(1)}; undeploy: processes gone p50 ${med(undeploys).toFixed(1)} ms after the API said gone`);
  ac.abort();
  await call('DELETE', `/api/application/${created[0]!.applicationID}`);
  await new Promise((r) => setTimeout(r, 500));
} finally {
  await oakd.close().catch(() => undefined);
  // with --netmanager on: its tunnel device and nftables table stay after a close (flows survive a restart)
  await oakd.netmanager?.clean().catch(() => undefined);
  await removeInstanceNetwork({ namespace: ctd.namespace, dataDir: join(dir.path, 'oakd') }).catch(() => undefined);
  await ctd.stop();
  await dir.remove();
}
