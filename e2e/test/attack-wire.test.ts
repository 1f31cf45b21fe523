/**
 * Attacks on the wire of a real M-DOC in network namespaces (issue 7, docs/security.md): one
 * root+cluster host, two worker hosts running real NodeEngines, and the test process as an
 * attacker on the network (through the gateway). Each case asserts the refusal and that nothing
 * changed at the root (instances, their statuses, the workers the cluster reports).
 *
 * - anonymous MQTT (over TLS and in plain) is refused;
 * - a worker holding a valid token ("mallory") cannot subscribe to nor publish on another
 *   worker's topics: a forged FAILED for B's instance changes nothing, a phantom worker
 *   (nodes/<random>/information) is dropped and attracts no placement;
 * - registration without a token, with a revoked one, or with an oversized body: 401 / 413 and
 *   no worker recorded;
 * - the cluster's worker views (GET /api/nodes) are refused to other hosts;
 * - revoking mallory's token disconnects it at once and it cannot come back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connectBus } from '@oak/bus';
import { tryParseJoinToken, type ClusterDoc } from '@oak/contracts';
import { postJson, requestJson, waitFor } from '@oak/testkit';
import { CLUSTER_SERVICE_NAME, fetchPinnedCa, pinnedTlsOptions } from '@oak/trust';
import { startFakeWorker, type FakeWorker } from '../../apps/cluster/test/harness.ts';
import type { Api } from '../src/api.ts';
import { sla } from '../src/sla.ts';
import { Topology } from '../src/topology.ts';

type Summary = NonNullable<ClusterDoc['resources']>['worker_summary'];

async function summary(api: Api): Promise<Summary> {
  const cs = await api.call<ClusterDoc[]>('GET', '/api/clusters/active');
  return cs[0]?.resources?.worker_summary ?? [];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('M-DOC under attack: MQTT identity, ACLs and registration', { timeout: 300_000 }, async (t) => {
  const topo = new Topology();
  t.after(() => topo.close());
  const fakes: FakeWorker[] = [];
  t.after(async () => {
    for (const f of fakes) await f.close().catch(() => undefined);
  });
  try {
    await topo.init('atkw');
    const ctl = await topo.net.addHost('ctl');
    const h1 = await topo.net.addHost('w1');
    const h2 = await topo.net.addHost('w2');
    const api = await topo.root(ctl);
    await topo.cluster(ctl, '127.0.0.1', 'edge1');
    const w1 = await topo.worker(h1, ctl.ip);
    const w2 = await topo.worker(h2, ctl.ip);
    await waitFor(async () => ((await summary(api)).length === 2 ? true : undefined), { timeoutMs: 40_000, message: 'two workers reported' });

    const [app] = await api.createApps(sla({ code: topo.image, cmd: ['sleep', '600'], replicas: 1 }), true);
    assert.ok(app);
    const [svc] = await api.services(app.applicationID);
    assert.ok(svc);
    const running = await api.waitStatus(svc.microserviceID, 'RUNNING', 1, 60_000);
    const victimId = running.instance_list[0]?.worker_id;
    assert.ok(victimId, 'the instance runs on a worker');
    const history = async (): Promise<string[]> => ((await api.service(svc.microserviceID)).instance_list[0]?.history ?? []).map((h) => `${h.status}`);
    const historyBefore = await history();

    const regUrl = `https://${ctl.ip}:10100/api/node/register`;
    const mqttUrl = `mqtts://${ctl.ip}:10003`;
    const workerToken = await topo.joinToken({ kind: 'worker', cluster: 'edge1' });
    const caHash = tryParseJoinToken(workerToken)?.caHash ?? '';
    const tls = pinnedTlsOptions(await fetchPinnedCa(ctl.ip, 10100, caHash), CLUSTER_SERVICE_NAME);

    // ---- anonymous MQTT: refused over TLS; the plain protocol gets nothing on the TLS port
    await assert.rejects(connectBus(mqttUrl, { clientId: `anon-${randomBytes(3).toString('hex')}`, tls, connectTimeoutMs: 3000 }), /not authori[sz]ed|refused|Bad username/i);
    await assert.rejects(connectBus(mqttUrl, { clientId: victimId, username: victimId, password: 'guess', tls, connectTimeoutMs: 3000 }));
    await assert.rejects(connectBus(`mqtt://${ctl.ip}:10003`, { clientId: 'plain', connectTimeoutMs: 2000 }));

    // ---- mallory: a worker with a valid token, reporting no capacity
    const mallory = await startFakeWorker(regUrl, 'mallory', { token: workerToken, cores: 0, memory: 0 });
    fakes.push(mallory);
    await waitFor(async () => ((await summary(api)).some((w) => w.id === mallory.id) ? true : undefined), { timeoutMs: 20_000, message: 'mallory reported' });

    // subscribing to the victim's commands is refused
    await assert.rejects(mallory.bus.subscribe(`nodes/${victimId}/control/#`, () => {}), /Subscribe error/);
    await assert.rejects(mallory.bus.subscribe('nodes/+/control/deploy', () => {}), /Subscribe error/);
    // a forged FAILED for the victim's instance: refused (mallory is disconnected), nothing changes
    void mallory.bus.publishJson(`nodes/${victimId}/job`, { job_name: running.job_name, instance_number: 0, status: 'FAILED', status_detail: 'forged by mallory' }, 0).catch(() => undefined);
    await waitFor(() => (!mallory.bus.connected ? true : undefined), { timeoutMs: 5000, message: 'mallory disconnected for the forged status' });
    await sleep(2000);
    const after = await api.service(svc.microserviceID);
    assert.equal(after.instance_list[0]?.status, 'RUNNING', 'the forged FAILED changed nothing');
    assert.equal(after.instance_list[0]?.worker_id, victimId);
    assert.deepEqual(await history(), historyBefore, 'no new status in the history');
    assert.equal((await w1.tasks()).length + (await w2.tasks()).length, 1, 'the container still runs');

    // ---- a phantom worker: mallory (back after re-registering) publishes for an id of its own invention
    await waitFor(() => (mallory.bus.connected ? true : undefined), { timeoutMs: 15_000, message: 'mallory reconnected' });
    const phantom = `phantom${randomBytes(4).toString('hex')}`;
    void mallory.bus.publishJson(`nodes/${phantom}/information`, { cpu_percent: 0, cpu_cores: 64, memory_free_mb: 1_000_000, memory_total_mb: 1_000_000, disk_free_mb: 1e6, gpus: 0, virtualizations: ['container', 'process'], running_instances: [], timestamp: Date.now() }, 0).catch(() => undefined);
    await sleep(2000);
    assert.ok(!(await summary(api)).some((w) => w.id === phantom), 'the phantom is not a worker');
    const [big] = await api.createApps(sla({ app: 'big', code: topo.image, cmd: ['sleep', '600'], memory: 500_000 }), true);
    assert.ok(big);
    const [bigSvc] = await api.services(big.applicationID);
    assert.ok(bigSvc);
    await sleep(3000);
    const bigInst = (await api.service(bigSvc.microserviceID)).instance_list[0];
    assert.notEqual(bigInst?.status, 'RUNNING', 'nothing placed on the phantom');
    assert.notEqual(bigInst?.worker_id, phantom);

    // ---- registration without a token, with a revoked one, with an oversized body
    const count = (await summary(api)).length;
    const noToken = await postJson(regUrl, { node_name: 'intruder', host: '10.0.0.99', cpu_cores: 64, memory_mb: 1e6, arch: 'x86_64', os: 'linux', virtualizations: ['container'] }, tls);
    assert.equal(noToken.status, 401);
    assert.equal((noToken.json.error as { code: string }).code, 'OAK_JOIN_TOKEN_INVALID');
    assert.match((noToken.json.error as { hint: string }).hint, /oak token create worker --cluster/);
    const revokedToken = await topo.joinToken({ kind: 'worker', cluster: 'edge1' });
    await api.call('DELETE', `/api/tokens/${tryParseJoinToken(revokedToken)?.id ?? ''}`);
    const revoked = await postJson(regUrl, { node_name: 'intruder', host: '10.0.0.99', cpu_cores: 64, memory_mb: 1e6, arch: 'x86_64', os: 'linux', virtualizations: ['container'], token: revokedToken }, tls);
    assert.equal(revoked.status, 401);
    const huge = await postJson(regUrl, { node_name: 'intruder', host: 'x', cpu_cores: 1, memory_mb: 1, arch: 'x', os: 'linux', virtualizations: ['container'], token: workerToken, pad: 'x'.repeat(48_000) }, tls);
    assert.equal(huge.status, 413);
    await sleep(1500);
    const s = await summary(api);
    assert.equal(s.length, count, 'no worker recorded');
    assert.ok(!s.some((w) => w.name === 'intruder'));

    // ---- the cluster's worker views are for its own host only
    const nodes = await requestJson(`https://${ctl.ip}:10100/api/nodes`, { tls });
    assert.equal(nodes.status, 403);
    assert.equal((nodes.json.error as { code: string }).code, 'OAK_FORBIDDEN');

    // ---- revoking mallory's token: disconnected at once, cannot come back, gone from the summary
    await api.call('DELETE', `/api/tokens/${tryParseJoinToken(workerToken)?.id ?? ''}`);
    await waitFor(() => (!mallory.bus.connected ? true : undefined), { timeoutMs: 5000, message: 'mallory disconnected by the revocation' });
    await waitFor(async () => (!(await summary(api)).some((w) => w.id === mallory.id) ? true : undefined), { timeoutMs: 15_000, message: 'mallory gone from the summary' });
    await sleep(2000);
    assert.equal(mallory.bus.connected, false, 'its re-registration is refused');
    await assert.rejects(connectBus(mqttUrl, { clientId: mallory.id, username: mallory.id, password: mallory.answer.mqtt_password ?? '', tls, connectTimeoutMs: 3000 }));
    // the real workers are untouched
    assert.equal((await api.service(svc.microserviceID)).instance_list[0]?.status, 'RUNNING');
    assert.equal((await summary(api)).length, 2);
  } catch (err) {
    console.error(topo.procs.logs());
    throw err;
  }
});
