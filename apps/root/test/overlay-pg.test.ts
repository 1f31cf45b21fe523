/**
 * Several roots on one PostgreSQL: their overlays change the one IPAM row under its lock, so
 * concurrent allocations from two roots never hand out an address or a subnet twice, and each
 * root sees the other's changes. (PostgreSQL at OAK_TEST_DATABASE_URL or 127.0.0.1:5432/test.)
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createStore } from '@oak/store';
import type { ServiceRow } from '@oak/store';
import { RootOverlay } from '../src/overlay.ts';

const url = process.env['OAK_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `oak_overlay_${process.pid}_${randomBytes(4).toString('hex')}`;

function service(job: string, rr_ip?: string): ServiceRow {
  return {
    id: `id-${job}`,
    application_id: 'a',
    organization_id: 'o',
    user_id: 'u',
    job_name: job,
    name: 'web',
    namespace: 'test',
    sla: { microservice_name: 'web', microservice_namespace: 'test', virtualization: 'container', code: 'x', ...(rr_ip ? { addresses: { rr_ip } } : {}) },
    created_at: '',
    updated_at: '',
    service_ip: null,
    service_ip_v6: null,
    closest_ip: null,
    closest_ip_v6: null,
    version: 1,
    next_instance: 0,
  };
}

describe('two roots on one PostgreSQL', () => {
  after(async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`drop schema if exists "${schema}" cascade`);
    await c.end();
  });

  test('concurrent allocations from both never collide; a requested rr_ip is had by one of them only', async () => {
    const [sa, sb] = await Promise.all([createStore({ databaseUrl: url, pgSchema: schema }), createStore({ databaseUrl: url, pgSchema: schema })]);
    try {
      const a = new RootOverlay(sa);
      const b = new RootOverlay(sb);
      const workers = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? a : b).allocateWorker(i % 3 === 0 ? 'c1' : 'c2', `w${i}`)));
      assert.equal(new Set(workers.map((w) => w.subnet)).size, 30, 'distinct subnets');
      assert.equal(new Set(workers.map((w) => w.subnet_v6)).size, 30);
      const services = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? a : b).assignService(service(`app.test.s${i}.test`))));
      const ips = services.flatMap((s) => [s.service_ip, s.closest_ip]);
      assert.equal(new Set(ips).size, 60, 'distinct service and closest IPs');
      // both ask for the same rr_ip at once: one gets it, the other is refused naming the owner
      const race = await Promise.allSettled([a.assignService(service('race.test.one.test', '10.30.99.99')), b.assignService(service('race.test.two.test', '10.30.99.99'))]);
      assert.deepEqual(race.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
      const refused = race.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      assert.equal((refused?.reason as { code?: string }).code, 'OAK_ADDRESS_CONFLICT');
      assert.match(String((refused?.reason as Error).message), /race\.test\.(one|two)\.test/);
      // each sees the other's state
      assert.equal(await a.jobOfAddress(services[1]!.service_ip!), 'app.test.s1.test');
      assert.deepEqual(await b.workerSubnets('w0'), workers[0]);
      // a worker of c1 cannot be taken by c2 through the other root
      await assert.rejects(b.allocateWorker('c2', 'w0'), /another cluster/);
    } finally {
      await Promise.all([sa.close(), sb.close()]);
    }
  });
});
