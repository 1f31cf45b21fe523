/**
 * The NetManager with the real OverlayResolver (on 127.0.0.1, an ephemeral port) and a fake
 * datapath: a name without table makes the NetManager ask the cluster and answer; unknown services
 * are NXDOMAIN; a service without IPv6 is NODATA for AAAA.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import * as dnsPacket from 'dns-packet';
import { netTopics } from '@oak/contracts';
import type { TableQueryRequest } from '@oak/contracts';
import { waitFor } from '@oak/testkit';
import { startNetManager } from '../src/netmanager.ts';
import { fakeDatapaths } from './fakes.ts';
import { DB, WEB, api, entry, options, register, withEnv } from './harness.ts';

function ask(port: number, name: string, type: 'A' | 'AAAA'): Promise<{ rcode: string | undefined; answers: string[] }> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    const id = Math.floor(Math.random() * 65535);
    const timer = setTimeout(() => { s.close(); reject(new Error(`no DNS answer for ${name}`)); }, 5000);
    s.on('message', (m) => {
      const p = dnsPacket.decode(m);
      if (p.id !== id) return;
      clearTimeout(timer);
      s.close();
      resolve({ rcode: (p as { rcode?: string }).rcode, answers: (p.answers ?? []).map((a) => String((a as { data: unknown }).data)) });
    });
    s.send(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] }), port, '127.0.0.1');
  });
}

test('DNS through the real resolver: table asked for on the first lookup, NXDOMAIN, NODATA', async () => {
  await withEnv(async (env) => {
    env.cluster.tables.set(WEB, { job_name: WEB, service_ip: '10.30.1.2', service_ip_v6: null, closest_ip: null, closest_ip_v6: null, instances: [entry(0, 'w2', '10.18.0.130')] });
    env.cluster.tables.set(DB, { job_name: DB, service_ip: '10.30.2.2', service_ip_v6: 'fdff::2:2', closest_ip: null, closest_ip_v6: null, instances: [] });
    const dps = fakeDatapaths();
    const nm = await startNetManager(options(env, { datapath: dps.factory, dnsHost: '127.0.0.1', dnsPort: 0, upstreams: [] }));
    try {
      const reg = await api(nm, 'POST', '/register', register(env));
      assert.equal(reg.status, 200);
      assert.equal((reg.json as { dns: string | null }).dns, '10.18.0.65');
      const port = await waitFor(() => (nm.status().dns as { listening: Array<{ port: number }> } | null)?.listening[0]?.port);
      const a = await ask(port, 'web.default.app.ns.oak', 'A');
      assert.deepEqual(a, { rcode: 'NOERROR', answers: ['10.30.1.2'] });
      assert.equal(env.cluster.of(netTopics.tableQueryRequest('w1')).filter((q) => (q as TableQueryRequest).job_name === WEB).length, 1);
      assert.deepEqual(await ask(port, '0.web.default.app.ns.oak', 'A'), { rcode: 'NOERROR', answers: ['10.30.1.10'] });
      assert.deepEqual(await ask(port, 'web.default.app.ns.oak', 'AAAA'), { rcode: 'NOERROR', answers: [] });
      assert.deepEqual(await ask(port, 'db.default.app.ns.oak', 'AAAA'), { rcode: 'NOERROR', answers: ['fdff::2:2'] });
      assert.equal((await ask(port, 'nope.default.app.ns.oak', 'A')).rcode, 'NXDOMAIN');
      assert.equal((await ask(port, '9.web.default.app.ns.oak', 'A')).rcode, 'NXDOMAIN');
      await waitFor(() => dps.last().services.some((s) => s.job_name === WEB), { message: 'looked-up service programmed' });
    } finally {
      await nm.close();
    }
  });
});
