/**
 * issue 13 point 6: the cluster and its workers on NATS server's MQTT mode (JetStream on, the
 * test's own nats-server with its own config, ports, users file and store, in the cluster host's
 * namespace; never the machine's NATS). Real root, real `oak-cluster` (MQTT_URL with its NATS
 * user, --nats-users-file/--nats-pid-file/--nats-monitor-url), two real NodeEngines:
 * registration, a process instance deployed to RUNNING, the NodeEngine that runs it killed
 * (-9) and noticed (its last will on nodes/<id>/gone, else silence), the instance rescheduled on
 * the other worker, the killed one back (one copy left), then undeployed with no process left. Hostile: one worker's credentials
 * (from the users file) cannot publish on, or subscribe to, the other worker's topics.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import mqtt from 'mqtt';
import { startNats, waitFor } from '@oak/testkit';
import type { InstanceDoc } from '@oak/contracts';
import { sla } from '../src/sla.ts';
import { FaultLab, clustersActive, deleteApp, processWorkload, workloads } from '../src/faults.ts';

/** user → password of the workers in the users file the cluster wrote */
function usersInFile(file: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const t = line.trim();
    if (!t.startsWith('{')) continue;
    const u = JSON.parse(t) as { user: string; password: string; allowed_connection_types?: string[] };
    if (u.allowed_connection_types?.includes('MQTT')) out.set(u.user, u.password);
  }
  return out;
}

test('cluster and NodeEngines on NATS MQTT: register, deploy, a killed worker noticed, undeploy; credentials stay per worker', { timeout: 300_000 }, async (t) => {
  const lab = new FaultLab();
  t.after(() => lab.close());
  await lab.init('fnats');
  const rh = await lab.net.addHost('root');
  const ch = await lab.net.addHost('c1');
  const h1 = await lab.net.addHost('w1');
  const h2 = await lab.net.addHost('w2');
  const root = await lab.root(rh);
  const api = root.api;

  const nats = await startNats({ host: '0.0.0.0', netns: ch.ns, dialHost: '127.0.0.1', adminUser: 'oak-c1', adminPassword: 'nats-e2e-secret' });
  t.after(() => nats.stop());
  const publicUrl = `mqtt://${ch.ip}:${nats.mqttPort}`;
  const cluster = await lab.cluster(ch, rh.ip, 'c1', {
    broker: { host: ch, port: nats.mqttPort, url: nats.adminUrl, publicUrl, kill9: () => nats.kill9(), restart: () => nats.restart() },
    env: { OAK_NATS_USERS_FILE: nats.usersFile, OAK_NATS_PID_FILE: nats.pidFile, OAK_NATS_MONITOR_URL: nats.monitorUrl },
  });
  const w1 = await lab.worker(h1, ch.ip);
  const w2 = await lab.worker(h2, ch.ip);
  const t0 = Date.now();
  await clustersActive(api, { c1: 2 }, 90_000);
  console.log(`NATS: two workers registered and reporting ${Date.now() - t0} ms after start`);
  // the cluster said at start what NATS is and what it cannot do
  const clog = cluster.proc.log();
  assert.match(clog, /NATS MQTT \d+\.\d+\.\d+: worker users in /);
  if (/NATS 2\.[0-9]\.\d+ refuses MQTT topics holding "\."/.test(clog)) console.log('NATS < 2.10: the cluster said it drops jobs/<job>/updates_available');

  // ---------------------------------------------------------------- deploy to RUNNING
  const marker = lab.marker('nats');
  const [app] = await api.createApps(sla({ app: 'natsapp', ...processWorkload(marker) }));
  assert.ok(app);
  const [svc] = await api.services(app.applicationID);
  assert.ok(svc);
  const sid = svc.microserviceID;
  const d0 = Date.now();
  const inst = await api.deployInstance(sid);
  const running = await api.waitInstances(sid, (l) => l.some((i) => i.instance_number === inst.instance_number && i.status === 'RUNNING'), 60_000, 'RUNNING');
  const first = running.instance_list.find((i) => i.instance_number === inst.instance_number) as InstanceDoc;
  console.log(`NATS: deploy to RUNNING ${Date.now() - d0} ms on worker ${first.worker_id}`);
  assert.ok(first.worker_id);
  await waitFor(() => workloads(marker).length === 1, { timeoutMs: 10_000, message: 'one workload process' });

  // ---------------------------------------------------------------- hostile: worker credentials
  const users = usersInFile(nats.usersFile);
  const ids = [...users.keys()].filter((u) => !u.endsWith('-net'));
  assert.equal(ids.length, 2, `two workers in the users file: ${[...users.keys()].join(', ')}`);
  const [victimId, attackerId] = first.worker_id === ids[0] ? [ids[0], ids[1]] : [ids[1], ids[0]] as [string, string];
  assert.ok(victimId && attackerId);
  const spy = await mqtt.connectAsync(`mqtt://${ch.ip}:${nats.mqttPort}`, { clientId: `spy-${marker}`, username: nats.adminUser, password: nats.adminPassword, reconnectPeriod: 0 });
  t.after(() => spy.endAsync(true));
  const seen: string[] = [];
  spy.on('message', (topic, payload) => seen.push(`${topic} ${payload.toString().slice(0, 80)}`));
  await spy.subscribeAsync(`nodes/${victimId}/#`, { qos: 1 });
  const attacker = await mqtt.connectAsync(`mqtt://${ch.ip}:${nats.mqttPort}`, { clientId: `${attackerId}-probe`, username: attackerId, password: users.get(attackerId) ?? '', reconnectPeriod: 0 });
  t.after(() => attacker.endAsync(true));
  for (const f of [`nodes/${victimId}/control/#`, `nodes/${victimId}/#`, 'nodes/+/control/#', '#']) {
    await assert.rejects(attacker.subscribeAsync(f, { qos: 1 }), Error, `the attacker may not subscribe to ${f}`);
  }
  const forged = { id: victimId, forged: marker, cpu: 0, memory: 0 };
  for (const topic of [`nodes/${victimId}/information`, `nodes/${victimId}/job`, `nodes/${victimId}/gone`]) attacker.publish(topic, JSON.stringify(forged), { qos: 1 });
  // a marker message through the same broker after the forged ones: when it arrived, they would have
  await spy.publishAsync(`nodes/${victimId}/control/probe-${marker}`, 'end', { qos: 1 });
  await waitFor(() => seen.some((s) => s.includes(`probe-${marker}`)), { timeoutMs: 5000, message: 'the probe' });
  assert.deepEqual(seen.filter((s) => s.includes(marker) && !s.includes('probe-')), [], 'nothing the attacker published on the victim\'s topics arrived');
  await attacker.endAsync(true);
  // the victim still runs its instance (the forged gone did not count)
  const still = (await api.service(sid)).instance_list.find((i) => i.instance_number === inst.instance_number);
  assert.equal(still?.status, 'RUNNING');
  assert.equal(still?.worker_id, victimId);

  // ---------------------------------------------------------------- a worker killed is noticed
  const victim = [w1, w2].find((w) => w.proc.log().includes(victimId));
  assert.ok(victim, `the NodeEngine registered as ${victimId}`);
  const k0 = Date.now();
  await victim.kill9();
  const details = new Set<string>();
  const moved = await api.waitInstances(sid, (l) => {
    const i = l.find((x) => x.instance_number === inst.instance_number);
    if (i?.status_detail) details.add(i.status_detail);
    return i !== undefined && i.status === 'RUNNING' && i.worker_id !== null && i.worker_id !== victimId;
  }, 60_000, 'rescheduled on the other worker');
  console.log(`NATS: killed worker noticed and the instance RUNNING elsewhere ${Date.now() - k0} ms after kill -9 (${[...details].join(' | ')})`);
  assert.ok(moved.instance_list.some((i) => i.worker_id === attackerId && i.status === 'RUNNING'));
  await clustersActive(api, { c1: 1 }, 30_000);
  // it comes back: registers again (a new user in the file), its stale copy goes
  await victim.restart();
  await clustersActive(api, { c1: 2 }, 60_000);
  await waitFor(() => workloads(marker).length === 1, { timeoutMs: 60_000, message: 'one copy of the instance after the worker came back' });

  // ---------------------------------------------------------------- undeploy
  const left = await deleteApp(api, app.applicationID, marker, 'nats');
  assert.equal(left, 0, 'deleting the application ends its processes');
});
