/**
 * A CPU profile of a running node process, without restarting it (a root under load, a stuck
 * one): SIGUSR1 opens its inspector, the V8 profiler samples it for a while, and the profile is
 * written, then summed up (self time and total time per function).
 *
 *   node --import tsx bench/tools/profile-pid.ts <pid> <seconds> <out.cpuprofile> [inspector port, default 9229]
 *   node --import tsx bench/tools/profile-pid.ts --summary <file.cpuprofile> [rows]
 *
 * The inspector stays open in the profiled process afterwards (on 127.0.0.1 only).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import WebSocket from 'ws';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export function summary(p: Profile, rows = 40): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const total = p.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0);
  const key = (n: Node): string => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(apps|packages|node_modules)\//, '$1/')}:${n.callFrame.lineNumber + 1}`;
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  for (const n of p.nodes) {
    const h = n.hitCount ?? 0;
    if (h === 0) continue;
    self.set(key(n), (self.get(key(n)) ?? 0) + h);
    // every distinct function on the stack gets the hit once
    const seen = new Set<string>();
    for (let cur: Node | undefined = n; cur; cur = byId.get(parent.get(cur.id) ?? -1)) {
      const k = key(cur);
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + h);
    }
  }
  const pct = (x: number): string => `${((x / Math.max(1, total)) * 100).toFixed(1)}%`.padStart(6);
  const top = (m: Map<string, number>): string[] => [...m].sort((a, b) => b[1] - a[1]).slice(0, rows).map(([k, v]) => `${pct(v)} ${k}`);
  return [`${total} samples over ${((p.endTime - p.startTime) / 1e6).toFixed(1)} s`, '-- self', ...top(self), '-- total', ...top(incl)].join('\n');
}

async function capture(pid: number, seconds: number, out: string, port: number): Promise<void> {
  process.kill(pid, 'SIGUSR1');
  let url: string | undefined;
  for (let i = 0; i < 50 && url === undefined; i++) {
    await new Promise((r) => setTimeout(r, 200));
    try {
      const list = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
      url = list[0]?.webSocketDebuggerUrl;
    } catch {
      // not listening yet
    }
  }
  if (url === undefined) throw new Error(`no inspector on port ${port}`);
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  let seq = 0;
  const waiting = new Map<number, (r: unknown) => void>();
  ws.on('message', (d: Buffer) => {
    const m = JSON.parse(d.toString()) as { id?: number; result?: unknown };
    if (m.id !== undefined) waiting.get(m.id)?.(m.result);
  });
  const call = (method: string, params: object = {}): Promise<unknown> =>
    new Promise((resolve) => {
      const id = ++seq;
      waiting.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await call('Profiler.enable');
  await call('Profiler.setSamplingInterval', { interval: 1000 });
  await call('Profiler.start');
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const { profile } = (await call('Profiler.stop')) as { profile: Profile };
  ws.close();
  writeFileSync(out, JSON.stringify(profile));
  console.log(summary(profile));
}

const args = process.argv.slice(2);
if (args[0] === '--summary') console.log(summary(JSON.parse(readFileSync(args[1] ?? '', 'utf8')) as Profile, Number(args[2] ?? 40)));
else await capture(Number(args[0]), Number(args[1] ?? 10), args[2] ?? 'root.cpuprofile', Number(args[3] ?? 9229));
