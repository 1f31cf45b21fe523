/**
 * The load generator of the `root-scale` benchmark, in a process of its own: open-loop GETs at a
 * fixed rate (request i is due at start + i / rate, whatever the answers before it did), each
 * latency measured from the time the request was due, not from when it could be sent, so a
 * stalled server is not hidden by a client that waits for it (coordinated omission). Keep-alive
 * connections, as many as the requests in flight need.
 *
 * stdin lines: `run <json {name, base, token?, rate, warmupMs, durationMs, paths}>` -> a line
 * `result <json>` (latency percentiles in ms of the requests due after the warm-up, their count,
 * errors, mean body size); `quit`.
 */
import { Agent, request } from 'node:http';
import { createInterface } from 'node:readline';

interface Run {
  name: string;
  base: string;
  token?: string;
  rate: number;
  warmupMs: number;
  durationMs: number;
  paths: string[];
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

const agent = new Agent({ keepAlive: true, maxSockets: 512, keepAliveMsecs: 10_000 });

function get(url: URL, token: string | undefined): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve) => {
    const r = request(url, { method: 'GET', agent, headers: token !== undefined ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => {
        bytes += d.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', () => resolve({ status: 0, bytes }));
    });
    r.on('error', () => resolve({ status: 0, bytes: 0 }));
    r.end();
  });
}

async function run(o: Run): Promise<Record<string, unknown>> {
  const interval = 1000 / o.rate;
  const total = Math.round(((o.warmupMs + o.durationMs) / 1000) * o.rate);
  const warm = Math.round((o.warmupMs / 1000) * o.rate);
  const lat: number[] = [];
  const statuses: Record<string, number> = {};
  let bytes = 0;
  let measured = 0;
  let lateMax = 0;
  const pending: Promise<void>[] = [];
  const start = performance.now() + 20;
  let i = 0;
  await new Promise<void>((done) => {
    const tick = (): void => {
      const now = performance.now();
      while (i < total && start + i * interval <= now) {
        const due = start + i * interval;
        lateMax = Math.max(lateMax, now - due);
        const k = i++;
        const url = new URL(o.base + (o.paths[k % o.paths.length] as string));
        pending.push(get(url, o.token).then((r) => {
          if (k < warm) return;
          const ms = performance.now() - due;
          measured++;
          statuses[r.status] = (statuses[r.status] ?? 0) + 1;
          if (r.status === 200) {
            lat.push(ms);
            bytes += r.bytes;
          }
        }));
      }
      if (i >= total) return done();
      setTimeout(tick, Math.max(0, start + i * interval - performance.now()));
    };
    tick();
  });
  await Promise.all(pending);
  lat.sort((a, b) => a - b);
  const r2 = (x: number): number => Math.round(x * 100) / 100;
  return {
    name: o.name,
    rate: o.rate,
    requests: measured,
    ok: lat.length,
    statuses,
    p50_ms: r2(pct(lat, 50)),
    p95_ms: r2(pct(lat, 95)),
    p99_ms: r2(pct(lat, 99)),
    max_ms: r2(lat.length > 0 ? (lat[lat.length - 1] as number) : NaN),
    mean_ms: r2(lat.reduce((s, x) => s + x, 0) / Math.max(1, lat.length)),
    body_bytes: Math.round(bytes / Math.max(1, lat.length)),
    /** how late this process itself sent a request at worst (its own timer lag, in the latencies) */
    send_lag_max_ms: r2(lateMax),
  };
}

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = line.trim();
  if (cmd === 'quit') break;
  if (cmd.startsWith('run ')) {
    const r = await run(JSON.parse(cmd.slice(4)) as Run);
    process.stdout.write(`result ${JSON.stringify(r)}\n`);
  }
}
agent.destroy();
process.exit(0);
