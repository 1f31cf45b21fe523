/**
 * The root's own cost of POST /api/service/{id}/instance, without the rest of a 1-DOC: the root
 * app through fastify inject on a SQLite file (WAL, as a data dir has it), the control plane a
 * recorder (no reconciler pass, no cluster). Instances are only added, so the IPAM grows with N.
 *   TMPDIR=/dev/shm N=200 node --import tsx bench/tools/post-instance.ts
 * Prints the POST's p50/p10 after 20 warm-up requests and the process CPU per request.
 */
import { createStore } from '@oak/store';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { testRoot } from '../../apps/root/test/helpers.ts';
const dir = mkdtempSync(join(tmpdir(), 'oak-post-'));
const store = await createStore({ sqlitePath: join(dir, 'db.sqlite') });
const t = await testRoot({ store });
const tok = await t.login('Admin');
const app = await t.req('POST', '/api/application/', tok, { sla_version: 'v2.0', customerID: 'Admin', applications: [{ application_name: 'pb', application_namespace: 'bench', application_desc: 'd', microservices: [{ microservice_name: 'svc', microservice_namespace: 'bench', virtualization: 'process', code: '/bin/sleep', cmd: ['600'], memory: 32, vcpus: 0.1 }] }] });
const appId = (app.json() as { applicationID: string }[])[0]!.applicationID;
const svcs = await t.req('GET', `/api/services/${appId}`, tok);
const sid = (svcs.json() as { microserviceID: string }[])[0]!.microserviceID;
const N = Number(process.env.N ?? 200);
const times: number[] = [];
const cpu0 = process.cpuUsage();
for (let i = 0; i < N; i++) {
  const t0 = performance.now();
  const r = await t.req('POST', `/api/service/${sid}/instance`, tok);
  if (r.statusCode !== 200) throw new Error(r.body);
  times.push(performance.now() - t0);
  await new Promise((r) => setImmediate(r)); // the audit write
}
const c = process.cpuUsage(cpu0);
const s = times.slice(20).sort((a, b) => a - b);
console.log(`POST p50 ${s[Math.floor(s.length / 2)]!.toFixed(3)} ms  p10 ${s[Math.floor(s.length / 10)]!.toFixed(3)}  cpu/req ${((c.user + c.system) / 1000 / N).toFixed(3)} ms`);
await t.close();
rmSync(dir, { recursive: true, force: true });
