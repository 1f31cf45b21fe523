/**
 * The runtime matrix in a 1-DOC (issue 10): for every virtualization the worker offers, through the
 * API of the real `oakd` binary: a service RUNNING with its output in the logs, a one-shot
 * COMPLETED or FAILED by its exit code, a workload over its memory limit FAILED with the reason, a
 * kill -9 of oakd and a restart re-adopting every instance without a duplicate, and a delete
 * leaving no copy behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildBusyboxImage, buildTestKernel, freePort, startContainerd, startRegistry, tmpDir, waitFor } from '@oak/testkit';
import { removeInstanceNetwork } from '../../apps/node-engine/src/network.ts';
import { Api, waitHealthy } from '../src/api.ts';
import { Procs, bins } from '../src/procs.ts';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile, rm } from 'node:fs/promises';
import { DEFAULT_MICROVM_KERNEL_DIR, findKernel, probeQemu } from '@oak/runtimes';
import { Matrix, copies, microvmFixture, settleAll, shellFixtures, unikernelFixture, wasmFixture, type Deployed } from '../src/runtimes.ts';

const PASSWORD = 'e2e-runtimes-1';

async function oneWorker(api: Api, what: string): Promise<string[]> {
  const cs = await waitFor(async () => {
    const l = await api.call<{ resources: { workers: number; virtualizations: string[] } | null }[]>('GET', '/api/clusters/active');
    return l.length === 1 && l[0]?.resources?.workers === 1 ? l : undefined;
  }, { timeoutMs: 30_000, message: what });
  return cs[0]?.resources?.virtualizations ?? [];
}

test('1-DOC runtime matrix: every offered virtualization runs, logs, fails by its limit, is re-adopted and leaves nothing', { timeout: 600_000 }, async (t) => {
  // containerd and the registry side by side; the image once the registry listens
  const ctdP = startContainerd();
  const regP = startRegistry();
  t.after(async () => (await ctdP.catch(() => undefined))?.stop());
  t.after(async () => (await regP.catch(() => undefined))?.stop());
  const [ctd, reg] = await Promise.all([ctdP, regP]);
  const image = await buildBusyboxImage(reg);
  const dir = await tmpDir('oak-e2e-rt1');
  t.after(() => dir.remove());
  // the worker's process workloads work beside its data dir (<data dir>-work)
  t.after(() => rm(`${dir.path}-work`, { recursive: true, force: true }));
  const procs = new Procs();
  t.after(() => procs.stopAll());
  t.after(() => removeInstanceNetwork({ namespace: ctd.namespace, dataDir: dir.path }));
  const fixtures = [...shellFixtures(image), await wasmFixture(dir.path)];
  if (typeof (await probeQemu()) !== 'string') {
    // the unikernel: the testkit's kernel archive from a local HTTP server
    const archive = await readFile((await buildTestKernel()).archive);
    const srv = createServer((req, res) => (req.url === '/uk.tar.gz' ? res.writeHead(200, { 'content-length': archive.length }).end(archive) : res.writeHead(404).end()));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    t.after(() => srv.close());
    fixtures.push(unikernelFixture(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/uk.tar.gz`));
    // the microvm: the same busybox image with the kernel scripts/microvm-kernel.sh unpacked
    if (typeof (await findKernel(DEFAULT_MICROVM_KERNEL_DIR)) !== 'string') fixtures.push(microvmFixture(image));
  }

  const port = await freePort();
  const args = [
    '--host', '127.0.0.1', '--port', String(port),
    '--link-port', String(await freePort()), '--cluster-port', String(await freePort()), '--mqtt-port', String(await freePort()),
    '--data-dir', dir.path, '--containerd', ctd.socket, '--namespace', ctd.namespace, '--report-interval', '500',
    '--netmanager', 'off',
  ];
  const env = { OAK_ADMIN_PASSWORD: PASSWORD };
  let oakd = procs.spawn('oakd', bins.oakd, args, { dir: dir.path, env });
  const base = `http://127.0.0.1:${port}`;
  const api = new Api(base);
  const m = new Matrix(api, `rt1d${process.pid}`);
  try {
    await waitHealthy(`${base}/healthz`);
    await api.login('Admin', PASSWORD);
    const offered = await oneWorker(api, 'the 1-DOC cluster with its worker');
    // the 1-DOC offers what this machine can run
    for (const f of fixtures) assert.ok(offered.includes(f.virtualization), `the 1-DOC offers ${f.virtualization} (offered: ${offered.join(', ')})`);

    // everything at once, waited for side by side (a step waits for the slowest start: a microvm's
    // boot under software emulation, not the sum of them): a service per virtualization RUNNING with
    // its output in the logs and one copy; one-shots exiting 0 COMPLETED and 3 FAILED with the code;
    // a workload over its memory limit FAILED with the reason
    const deploys: Promise<unknown>[] = [];
    const services: Deployed[] = [];
    for (const f of fixtures) {
      deploys.push(m.deploy(f, 'svc', f.service(m.marker(f, 'svc'))).then(async (d) => {
        services.push(d);
        await m.one(d, (i) => i.status === 'RUNNING', 'RUNNING', f.startMs);
        await m.waitLogs(d, `${d.marker} up`, f.startMs);
        assert.equal(copies(d.marker).length, 1, `${d.marker}: one copy runs`);
      }));
      deploys.push(m.deploy(f, 'ok', f.oneShot(m.marker(f, 'ok'), 0)).then((d) => m.one(d, (i) => i.status === 'COMPLETED', 'COMPLETED', f.startMs)));
      deploys.push(m.deploy(f, 'bad', f.oneShot(m.marker(f, 'bad'), 3)).then(async (d) => {
        const failed = await m.one(d, (i) => i.status === 'FAILED', 'FAILED', f.startMs);
        assert.match(failed.status_detail, /code 3/, `${d.marker}: the exit code in the detail`);
      }));
      if (f.hog !== undefined) {
        deploys.push(m.deploy(f, 'hog', { ...f.hog(m.marker(f, 'hog')), extra: { restart: 'never' } }).then(async (d) => {
          const failed = await m.one(d, (i) => i.status === 'FAILED', 'FAILED by its memory limit', f.startMs + 30_000);
          assert.match(failed.status_detail, /out of memory/, `${d.marker}: the reason`);
        }));
      }
    }
    await settleAll(deploys);

    // kill -9 and restart on the same data: every service re-adopted (the worker says so), RUNNING,
    // still one copy each
    await oakd.kill('SIGKILL');
    for (const d of services) assert.equal(copies(d.marker).length, 1, `${d.marker} outlives oakd`);
    oakd = procs.spawn('oakd-2', bins.oakd, args, { dir: dir.path, env });
    await waitHealthy(`${base}/healthz`);
    await api.login('Admin', PASSWORD);
    await oneWorker(api, 'the worker back after the restart');
    const restarted = oakd;
    const adopted = await waitFor(() => /re-adopted (\d+) running instance/.exec(restarted.log())?.[1], { timeoutMs: 60_000, message: 'the worker re-adopts its instances after the restart' });
    assert.equal(Number(adopted), services.length, `the worker re-adopted the ${services.length} services`);
    await settleAll(services.map(async (d) => {
      await m.one(d, (i) => i.status === 'RUNNING', 'RUNNING after the restart', 30_000);
      await m.waitLogs(d, `${d.marker} up`);
      assert.equal(copies(d.marker).length, 1, `${d.marker}: re-adopted, not started twice`);
    }));

    // delete: nothing of any of them is left
    await m.deleteAll();
    await waitFor(async () => ((await ctd.ctr(['containers', 'ls', '-q'])).stdout.trim() === '' ? true : undefined), { timeoutMs: 20_000, message: 'no container left' });
  } catch (err) {
    console.error(procs.logs());
    throw err;
  }
});
