/**
 * The 1-DOC in one process: its worker speaks MQTT to the cluster's embedded broker over a
 * connection inside the process (no TLS, no loopback socket per message), authenticated with its
 * own credentials as over the network; a process deploy reaches RUNNING through it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ApplicationDoc, ServiceDoc } from '@oak/contracts';
import { freePort, tmpDir, waitFor } from '@oak/testkit';
import { parseConfig } from '../src/config.ts';
import { startOakd } from '../src/oakd.ts';
import { removeInstanceNetwork } from '../../node-engine/src/network.ts';

/** established TCP connections (either end) on this port, from /proc/net/tcp{,6} */
function tcpConnectionsOn(port: number): number {
  let n = 0;
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 4 || cols[3] !== '01') continue; // 01: ESTABLISHED
      if (cols[1]?.endsWith(`:${hex}`) || cols[2]?.endsWith(`:${hex}`)) n++;
    }
  }
  return n;
}

test('1-DOC: the worker reaches the embedded broker inside the process, authenticated; a process deploy runs', async (t) => {
  const dir = await tmpDir('oak-inproc');
  const port = await freePort();
  const mqttPort = await freePort();
  const ns = `oakip${process.pid % 100000}`;
  const cfg = parseConfig(['--host', '127.0.0.1', '--port', String(port), '--link-port', String(await freePort()),
    '--cluster-port', String(await freePort()), '--mqtt-port', String(mqttPort), '--data-dir', join(dir.path, 'oakd'),
    '--containerd', join(dir.path, 'no-containerd.sock'), '--namespace', ns, '--report-interval', '500',
    '--log-level', 'error', '--netmanager', 'off'], {});
  if (cfg === 'help') throw new Error('help');
  cfg.adminPassword = 'in-process-secret-1';
  const oakd = await startOakd(cfg, () => undefined);
  t.after(async () => {
    await oakd.close();
    await removeInstanceNetwork({ namespace: ns, dataDir: join(dir.path, 'oakd') }).catch(() => undefined);
    await dir.remove();
  });
  const base = `http://127.0.0.1:${port}`;
  let token = '';
  const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const res = await fetch(base + path, { method, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body === undefined ? null : JSON.stringify(body) });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path} ${res.status} ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  };
  token = (await call<{ token: string }>('POST', '/api/auth/login', { username: 'Admin', password: cfg.adminPassword })).token;
  await waitFor(async () => ((await call<{ resources: { workers: number } | null }[]>('GET', '/api/clusters/active'))[0]?.resources?.workers === 1 ? true : undefined), { timeoutMs: 20_000, message: 'the worker is up' });
  // the worker holds credentials of its own on the broker (it registered like any worker)
  assert.equal(oakd.cluster.credentials().size, 1);
  const [app] = await call<ApplicationDoc[]>('POST', '/api/application/', { sla_version: 'v2.0', customerID: 'Admin', applications: [{ application_name: 'inproc', application_namespace: 'test', application_desc: 'd', microservices: [{ microservice_name: 'svc', microservice_namespace: 'test', virtualization: 'process', code: '/bin/sleep', cmd: ['60'], memory: 16, vcpus: 0.1 }] }] });
  const [svc] = await call<ServiceDoc[]>('GET', `/api/services/${app?.applicationID}`);
  await call('POST', `/api/service/${svc?.microserviceID}/instance`);
  await waitFor(async () => ((await call<ServiceDoc>('GET', `/api/service/${svc?.microserviceID}`)).instance_list.some((i) => i.status === 'RUNNING') ? true : undefined), { timeoutMs: 20_000, message: 'RUNNING' });
  // nobody speaks MQTT over TCP here: the cluster's client and the worker are both in-process
  assert.equal(tcpConnectionsOn(mqttPort), 0, 'no TCP connection to the broker port');
  await call('DELETE', `/api/application/${app?.applicationID}`);
  await waitFor(async () => ((await call<ServiceDoc[]>('GET', `/api/services/${app?.applicationID}`).catch(() => [])).length === 0 ? true : undefined), { timeoutMs: 20_000, message: 'deleted' });
});
