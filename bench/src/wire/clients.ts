/**
 * The worker side of the `wire` benchmark, in a process of its own so that the broker's CPU is
 * measured alone: connects N workers (each with its own credentials, over TLS or not), then on
 * every `go <k>` line of stdin publishes k rounds of `information` reports (one per worker per
 * round) and answers `done <delivered>` once a subscriber (the cluster's client) got them all.
 *
 * argv: <config json file>; stdout lines: `ready`, `done <n>`.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { connectBus } from '@oak/bus';
import type { Bus } from '@oak/bus';

interface Config {
  url: string;
  ca?: string;
  admin?: { user: string; password: string };
  workers: { id: string; password?: string }[];
  payload: Record<string, unknown>;
}

const cfg = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as Config;
const tls = cfg.ca !== undefined ? { tls: { ca: cfg.ca, servername: 'oak-cluster', rejectUnauthorized: true } } : {};
let delivered = 0;
const observer = await connectBus(cfg.url, { clientId: cfg.admin?.user ?? 'bench-observer', ...(cfg.admin ? { username: cfg.admin.user, password: cfg.admin.password } : {}), ...tls, connectTimeoutMs: 20_000 });
await observer.subscribe('nodes/+/information', () => {
  delivered++;
});
const buses: { id: string; bus: Bus }[] = [];
for (let i = 0; i < cfg.workers.length; i += 50) {
  const batch = cfg.workers.slice(i, i + 50);
  const got = await Promise.all(batch.map((w) => connectBus(cfg.url, { clientId: w.id, ...(w.password !== undefined ? { username: w.id, password: w.password } : {}), ...tls, connectTimeoutMs: 20_000, keepaliveS: 60 })));
  got.forEach((bus, k) => buses.push({ id: batch[k]?.id ?? '', bus }));
}
process.stdout.write('ready\n');
const payload = JSON.stringify(cfg.payload);
for await (const line of createInterface({ input: process.stdin })) {
  const m = /^go (\d+)$/.exec(line.trim());
  if (line.trim() === 'quit') break;
  if (!m) continue;
  const rounds = Number(m[1]);
  delivered = 0;
  for (let r = 0; r < rounds; r++) {
    await Promise.all(buses.map(({ id, bus }) => bus.publish(`nodes/${id}/information`, payload, 1)));
  }
  const want = rounds * buses.length;
  const until = Date.now() + 60_000;
  while (delivered < want && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
  process.stdout.write(`done ${delivered}\n`);
}
for (const b of buses) await b.bus.close();
await observer.close();
process.exit(0);
