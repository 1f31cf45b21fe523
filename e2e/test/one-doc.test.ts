/**
 * 1-DOC end to end: the real `oakd` binary (root + cluster + worker in one process, embedded broker
 * and SQLite) with a private containerd and a local registry. An SLA posted to the API ends as a
 * real container RUNNING (on the built-in NetManager's overlay: service IP, instance IP, nsip); scale,
 * undeploy, a pending reason, and a kill -9 + restart on the same data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serviceTable, tunnelDevice } from '@oak/net';
import { buildBusyboxImage, establishedTcp, freePort, run, startContainerd, startRegistry, tmpDir, waitFor } from '@oak/testkit';
import { removeInstanceNetwork } from '../../apps/node-engine/src/network.ts';
import { Api, waitHealthy } from '../src/api.ts';
import { Procs, bins } from '../src/procs.ts';
import { sla } from '../src/sla.ts';

test('1-DOC: SLA -> RUNNING container, scale, undeploy, pending reason, kill -9 and restart', { timeout: 240_000 }, async (t) => {
  // containerd, and the registry with the image, at once; each stopped at the end whatever the other did
  const [ctdUp, regUp] = await Promise.allSettled([
    startContainerd().then((c) => {
      t.after(() => c.stop());
      return c;
    }),
    startRegistry().then(async (r) => {
      t.after(() => r.stop());
      return { reg: r, image: await buildBusyboxImage(r) };
    }),
  ]);
  if (ctdUp.status === 'rejected') throw ctdUp.reason;
  if (regUp.status === 'rejected') throw regUp.reason;
  const ctd = ctdUp.value;
  const { image } = regUp.value;
  const dir = await tmpDir('oak-e2e-1doc');
  t.after(() => dir.remove());
  const procs = new Procs();
  t.after(() => procs.stopAll());
  t.after(() => removeInstanceNetwork({ namespace: ctd.namespace, dataDir: dir.path }));

  const port = await freePort();
  const mqttPort = await freePort();
  const args = [
    '--host', '127.0.0.1', '--port', String(port),
    '--link-port', String(await freePort()), '--cluster-port', String(await freePort()), '--mqtt-port', String(mqttPort),
    '--data-dir', dir.path, '--containerd', ctd.socket, '--namespace', ctd.namespace, '--report-interval', '500',
    // the built-in NetManager (on by default) on a free port; its tunnel endpoint is --host, on a
    // UDP port of its own (one VXLAN device per VNI and port in a namespace: other runs may hold 50103)
    '--netmanager-port', '0', '--public-port', String(await freePort()),
  ];
  // the built-in NetManager keeps its tunnel device and table when oakd stops (flows survive a
  // restart): this test removes the ones named after its namespace
  t.after(async () => {
    await run('ip', ['link', 'del', tunnelDevice(ctd.namespace)], { check: false });
    await run('nft', ['delete', 'table', 'inet', serviceTable(ctd.namespace)], { check: false });
  });
  const env = { OAK_ADMIN_PASSWORD: 'e2e-secret-1' };
  let oakd = procs.spawn('oakd', bins.oakd, args, { dir: dir.path, env });
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitHealthy(`${base}/healthz`);
    const api = new Api(base);
    await api.login('Admin', 'e2e-secret-1');
    // the embedded cluster registers with the root and reports its worker
    await waitFor(async () => {
      const cs = await api.call<{ status: string; resources: { workers: number } | null }[]>('GET', '/api/clusters/active');
      return cs.length === 1 && cs[0]?.resources?.workers === 1 ? cs : undefined;
    }, { timeoutMs: 20_000, message: 'one active cluster with one worker' });

    // SLA -> real container RUNNING
    const [app] = await api.createApps(sla({ code: image, cmd: ['sh', '-c', 'echo hello-from-e2e; sleep 600'] }));
    assert.ok(app);
    const [svc] = await api.services(app.applicationID);
    assert.ok(svc);
    assert.equal(svc.job_name, 'e2eapp.test.svc.test');
    await api.deployInstance(svc.microserviceID);
    const running = await api.waitStatus(svc.microserviceID, 'RUNNING', 1, 30_000);
    // the overlay of the 1-DOC: a service IP and an instance IP from the root, the namespace on the worker's subnet
    const withNet = await api.waitInstances(svc.microserviceID, (l) => /^10\.18\./.test(l[0]?.nsip ?? ''), 20_000, 'the instance on the overlay subnet (nsip 10.18.x)');
    assert.match(withNet.service_ip ?? '', /^10\.30\./, 'the service has a service IP');
    assert.match(withNet.instance_list[0]?.instance_ip ?? '', /^10\.30\./, 'the instance has an instance IP');
    // the worker and the built-in NetManager reach the embedded broker inside oakd: no MQTT over TCP
    assert.equal(establishedTcp(mqttPort), 0, 'no TCP connection to the broker port');
    assert.ok(running.instance_list[0]?.worker_id, 'instance knows its worker');
    // Oakestra's clients read publicip: the worker's address (its NetManager's NodePublicAddress)
    assert.match(running.instance_list[0]?.publicip ?? '', /^[0-9a-f.:]+$/i, 'publicip is the worker address');
    const tasks = async () => (await ctd.ctr(['tasks', 'ls'])).stdout.split('\n').filter((l) => /\sRUNNING\b/.test(l));
    assert.equal((await tasks()).length, 1, 'one container task runs');
    const history = running.instance_list[0]?.history?.map((h) => h.status) ?? [];
    assert.deepEqual(history.slice(0, 1), ['REQUESTED']);
    assert.ok(history.includes('RUNNING'));

    // per-instance readings from the real NodeEngine (issue 11): jobs/resources -> cluster -> root
    const usage = await waitFor(async () => {
      const m = await api.call<{ instances: { instance_number: number; samples: { cpu_percent: number; memory_mb: number }[] }[] }>('GET', `/api/service/${svc.microserviceID}/metrics`);
      return (m.instances[0]?.samples.length ?? 0) >= 2 ? m : undefined;
    }, { timeoutMs: 30_000, message: "two readings of the container's CPU and memory at the root" });
    assert.ok((usage.instances[0]?.samples[0]?.memory_mb ?? 0) > 0, 'the container uses some memory');
    const worker = (await api.call<{ resources: { worker_summary: { cpu_percent?: number; memory_available_mb?: number; disk_free_mb?: number }[] } | null }[]>('GET', '/api/clusters/active'))[0]?.resources?.worker_summary[0];
    assert.equal(typeof worker?.cpu_percent, 'number', 'the worker\'s measured load');
    assert.ok((worker?.memory_available_mb ?? 0) > 0 && (worker?.disk_free_mb ?? 0) > 0);

    // logs through root -> cluster -> worker
    const logs = await fetch(`${base}/api/service/${svc.microserviceID}/instance/0/logs`, { headers: { authorization: `Bearer ${api.token}` } });
    assert.equal(logs.status, 200);
    assert.match(await logs.text(), /hello-from-e2e/);

    // scale up to 2, then down to 1
    await api.deployInstance(svc.microserviceID);
    await api.waitStatus(svc.microserviceID, 'RUNNING', 2, 30_000);
    await waitFor(async () => ((await tasks()).length === 2 ? true : undefined), { timeoutMs: 10_000, message: 'two tasks' });
    await api.undeployInstance(svc.microserviceID, 1);
    await api.waitInstances(svc.microserviceID, (l) => l.length === 1 && l[0]?.instance_number === 0, 10_000, 'one instance left');
    await waitFor(async () => ((await tasks()).length === 1 ? true : undefined), { timeoutMs: 20_000, message: 'undeployed container removed' });

    // an SLA that fits nowhere stays pending with a reason
    const [big] = await api.createApps(sla({ app: 'toobig', code: image, memory: 10_000_000 }));
    assert.ok(big);
    const [bigSvc] = await api.services(big.applicationID);
    assert.ok(bigSvc);
    await api.deployInstance(bigSvc.microserviceID);
    const pending = await api.waitInstances(bigSvc.microserviceID, (l) => (l[0]?.status_detail ?? '') !== '', 10_000, 'a pending reason');
    assert.equal(pending.instance_list[0]?.status, 'REQUESTED');
    assert.match(pending.instance_list[0]?.status_detail ?? '', /NoActiveClusterWithCapacity|NO_WORKER_CAPACITY|capacity/i);

    // kill -9 and start again on the same data: same applications, exactly the instances that should run
    const before = (await api.call<{ applicationID: string }[]>('GET', '/api/applications/')).map((a) => a.applicationID).sort();
    await oakd.kill('SIGKILL');
    assert.equal((await tasks()).length, 1, 'the container outlives oakd');
    oakd = procs.spawn('oakd-2', bins.oakd, args, { dir: dir.path, env });
    await waitHealthy(`${base}/healthz`);
    await api.login('Admin', 'e2e-secret-1');
    const after = (await api.call<{ applicationID: string }[]>('GET', '/api/applications/')).map((a) => a.applicationID).sort();
    assert.deepEqual(after, before);
    await api.waitStatus(svc.microserviceID, 'RUNNING', 1, 30_000);
    // re-adopted, not started twice
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal((await tasks()).length, 1, 'no duplicate container after restart');
    const stillPending = await api.service(bigSvc.microserviceID);
    assert.equal(stillPending.instance_list[0]?.status, 'REQUESTED');

    // deleting the application removes its container
    await api.call('DELETE', `/api/application/${app.applicationID}`);
    await waitFor(async () => ((await tasks()).length === 0 ? true : undefined), { timeoutMs: 20_000, message: 'containers removed after delete' });
  } catch (err) {
    console.error(procs.logs());
    throw err;
  }
});

