/**
 * The 1-DOC's own cluster joins its root in process, and its worker speaks MQTT to the cluster's
 * embedded broker in process (issue 9): no TCP connection to the link port nor to the broker port
 * while a process deploy goes root -> cluster -> worker and back (the worker authenticated with
 * credentials of its own, as over the network); the link port still takes clusters of other
 * machines over gRPC + TLS.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { silentLogger } from '@oak/bus';
import { startCluster, type ClusterHandle } from '@oak/cluster';
import type { ApplicationDoc, InstanceDoc, ServiceDoc } from '@oak/contracts';
import { establishedTcp, freePort, shortId, tmpDir, waitFor } from '@oak/testkit';
import { removeInstanceNetwork } from '../../node-engine/src/network.ts';
import { clusterJoinToken } from '../../root/test/join.ts';
import { parseConfig, startOakd, type Oakd } from '../src/index.ts';

const ADMIN_PASSWORD = 'oakd-secret-1234';
let oakd: Oakd;
let base = '';
let token = '';
let linkPort = 0;
let mqttPort = 0;
const cleanups: (() => Promise<void>)[] = [];

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(base + path, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

before(async () => {
  const dir = await tmpDir('oak-oakd-link');
  cleanups.push(() => dir.remove());
  const port = await freePort();
  linkPort = await freePort();
  mqttPort = await freePort();
  const namespace = `oak-t-${shortId()}`;
  // after oakd closed: the worker's bridge and rule table, and the (empty) cgroups of the namespace
  cleanups.push(async () => {
    await removeInstanceNetwork({ namespace, dataDir: join(dir.path, 'oakd') });
    for (const ctl of readdirSync('/sys/fs/cgroup')) {
      try {
        rmdirSync(join('/sys/fs/cgroup', ctl, namespace));
      } catch {
        // not there, or not a controller
      }
    }
  });
  const cfg = parseConfig(
    [
      '--host', '127.0.0.1',
      '--port', String(port),
      '--link-port', String(linkPort),
      '--cluster-port', String(await freePort()),
      '--mqtt-port', String(mqttPort),
      '--data-dir', join(dir.path, 'oakd'),
      // no containerd: the worker runs native processes
      '--containerd', join(dir.path, 'no-containerd.sock'),
      '--namespace', namespace,
      '--report-interval', '500',
      '--log-level', 'warn',
      '--netmanager', 'off',
    ],
    {},
  );
  assert.notEqual(cfg, 'help');
  if (cfg === 'help') return;
  cfg.adminPassword = ADMIN_PASSWORD;
  oakd = await startOakd(cfg, () => undefined);
  cleanups.push(() => oakd.close());
  base = `http://127.0.0.1:${port}`;
  token = (await api<{ token: string }>('POST', '/api/auth/login', { username: 'Admin', password: ADMIN_PASSWORD })).token;
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

test('the 1-DOC cluster is connected through the in-process link, its worker to the broker in process: a deploy runs, no TCP to either port', { timeout: 60_000 }, async () => {
  await waitFor(() => (oakd.cluster.rootConnected && oakd.link.link.connectedClusters().length === 1 ? true : undefined), { timeoutMs: 20_000 });
  const [clusterId] = oakd.link.link.connectedClusters();
  assert.ok(clusterId !== undefined);
  await waitFor(async () => ((await api<{ resources: { workers: number } | null }[]>('GET', '/api/clusters/active'))[0]?.resources?.workers === 1 ? true : undefined), { timeoutMs: 20_000 });
  const created = await api<ApplicationDoc[]>('POST', '/api/application/', {
    sla_version: 'v2.0',
    customerID: 'Admin',
    applications: [
      {
        application_name: 'inproc',
        application_namespace: 'test',
        application_desc: 'd',
        microservices: [{ microservice_name: 'svc', microservice_namespace: 'test', virtualization: 'process', code: '/bin/sleep', cmd: ['600'], memory: 32, vcpus: 0.1 }],
      },
    ],
  });
  const [svc] = await api<ServiceDoc[]>('GET', `/api/services/${created[0]?.applicationID ?? ''}`);
  assert.ok(svc);
  const inst = await api<InstanceDoc>('POST', `/api/service/${svc.microserviceID}/instance`);
  const running = await waitFor(
    async () => (await api<ServiceDoc>('GET', `/api/service/${svc.microserviceID}`)).instance_list.find((i) => i.instance_number === inst.instance_number && i.status === 'RUNNING'),
    { timeoutMs: 30_000 },
  );
  assert.equal(running.cluster_id, clusterId);
  // the link port listens, but nothing in this process is connected to it
  assert.equal(establishedTcp(linkPort), 0, 'no TCP connection to the link port');
  // the worker holds credentials of its own on the broker (it registered like any worker), and
  // nobody speaks MQTT over TCP here: the cluster's client and the worker are both in process
  assert.equal(oakd.cluster.credentials().size, 1);
  assert.equal(establishedTcp(mqttPort), 0, 'no TCP connection to the broker port');
  await api('DELETE', `/api/service/${svc.microserviceID}/instance/${inst.instance_number}`);
  await waitFor(async () => ((await api<ServiceDoc>('GET', `/api/service/${svc.microserviceID}`)).instance_list.some((i) => i.instance_number === inst.instance_number) ? undefined : true), { timeoutMs: 30_000 });
});

test('a cluster of another machine still joins the 1-DOC\'s root over gRPC + TLS on the link port', { timeout: 60_000 }, async () => {
  const joinToken = await clusterJoinToken(oakd.root.ctx, 'edge');
  const edge: ClusterHandle = await startCluster({
    name: 'edge',
    location: null,
    host: '127.0.0.1',
    port: 0,
    mqttPort: 0,
    tls: false,
    root: { address: `127.0.0.1:${linkPort}`, token: joinToken },
    log: silentLogger,
  });
  cleanups.push(() => edge.close());
  await waitFor(() => (oakd.link.link.connectedClusters().length === 2 ? true : undefined), { timeoutMs: 20_000 });
  const clusters = await api<{ cluster_name: string; status?: string }[]>('GET', '/api/clusters/active');
  assert.deepEqual(clusters.map((c) => c.cluster_name).sort(), ['edge', 'local'].sort());
  assert.ok(establishedTcp(linkPort) > 0, 'the external cluster dialled the link port');
  // and leaving marks it disconnected while the in-process cluster stays
  await edge.close();
  await waitFor(() => (oakd.link.link.connectedClusters().length === 1 ? true : undefined), { timeoutMs: 10_000 });
});
