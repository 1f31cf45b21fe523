/**
 * The runtime matrix in an M-DOC (issue 10; container, process, wasm, and unikernel and microvm
 * where qemu works and the microvm kernel is unpacked): a root+cluster host and two worker hosts (network namespaces, the real binaries). For every virtualization both workers offer: a service RUNNING
 * with its logs through root -> cluster -> worker, its worker's NodeEngine killed (-9) and started
 * again re-adopting it without a duplicate, a workload over its memory limit FAILED with the
 * reason, and a delete leaving no copy on either worker.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_MICROVM_KERNEL_DIR, findKernel, probeQemu } from '@oak/runtimes';
import { buildTestKernel, waitFor } from '@oak/testkit';
import type { InstanceDoc } from '@oak/contracts';
import { Matrix, copies, microvmFixture, registryIntoHosts, settleAll, shellFixtures, unikernelFixture, wasmFixture, type Deployed, type RuntimeFixture } from '../src/runtimes.ts';
import { Topology, soleClusterWith, type Worker } from '../src/topology.ts';

test('M-DOC runtime matrix: every virtualization on two workers runs, logs, is re-adopted after a NodeEngine kill, fails by its limit, leaves nothing', { timeout: 600_000 }, async (t) => {
  const topo = new Topology();
  t.after(() => topo.close());
  try {
    await topo.init('rtm');
    const ctl = await topo.net.addHost('ctl');
    const h1 = await topo.net.addHost('w1');
    const h2 = await topo.net.addHost('w2');
    const api = await topo.root(ctl);
    await topo.cluster(ctl, '127.0.0.1', 'edge1');
    // the two workers and the fixtures side by side
    const fixturesP = (async (): Promise<RuntimeFixture[]> => {
      const fixtures = [...shellFixtures(topo.image), await wasmFixture(topo.dir.path)];
      if (typeof (await probeQemu()) !== 'string') {
        // the unikernel: the testkit's kernel archive as a path on the workers (they share this
        // machine's filesystem; `code` may be an absolute path on the worker)
        const archive = join(topo.dir.path, 'uk.tar.gz');
        await copyFile((await buildTestKernel()).archive, archive);
        fixtures.push(unikernelFixture(archive));
        // the microvm: the topology's busybox image, pulled by the workers' NodeEngines themselves
        // (skopeo) through relays of the loopback registry into their namespaces
        if (typeof (await findKernel(DEFAULT_MICROVM_KERNEL_DIR)) !== 'string') {
          await registryIntoHosts(topo.procs, topo.dir.path, topo.image, topo.net.gatewayIp as string, [h1, h2]);
          fixtures.push(microvmFixture(topo.image));
        }
      }
      return fixtures;
    })();
    const [w1, w2, fixtures] = await Promise.all([topo.worker(h1, ctl.ip), topo.worker(h2, ctl.ip), fixturesP]);
    const workers: Worker[] = [w1, w2];
    const cluster = await soleClusterWith(api, 2);
    for (const f of fixtures) assert.ok(cluster.resources?.virtualizations.includes(f.virtualization), `the workers offer ${f.virtualization}`);
    const byId = (id: string | null): Worker | undefined => {
      const name = cluster.resources?.worker_summary.find((w) => w.id === id)?.name;
      return workers.find((w) => w.host.name === name);
    };
    const m = new Matrix(api, `rtmd${process.pid}`);
    // a failed run leaves no workload behind (supervised children outlive their killed NodeEngine):
    // the copies by marker, and whatever runs from the topology's directory (a microvm's qemu and
    // virtiofsd: its console, by which copies() knows it, may already be gone with the directory)
    const root = topo.dir.path;
    t.after(() => {
      const fromRoot = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid).filter((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(`${root}/worker-`);
        } catch {
          return false;
        }
      }).map(Number);
      for (const d of m.deployed) {
        for (const pid of [...copies(d.marker), ...fromRoot]) {
          for (const target of [-pid, pid]) {
            try {
              process.kill(target, 'SIGKILL');
            } catch {
              /* not a group leader, or gone */
            }
          }
        }
      }
    });

    // everything at once, waited for side by side (the slowest start, not the sum of them): a
    // service per virtualization RUNNING with its logs and one copy, and a workload over its memory
    // limit FAILED with the reason. The services are pinned to w1 (a direct constraint): a killed
    // NodeEngine's worker is lost at once (its MQTT last will), and an unpinned instance would be
    // placed on w2; pinned, it must be re-adopted on w1
    const pin = { constraints: [{ type: 'direct', node: 'w1' }] };
    const services: { d: Deployed; i: InstanceDoc }[] = [];
    const steps: Promise<unknown>[] = [];
    for (const f of fixtures) {
      steps.push(m.deploy(f, 'svc', { ...f.service(m.marker(f, 'svc')), extra: pin }).then(async (d) => {
        const i = await m.one(d, (x) => x.status === 'RUNNING', 'RUNNING', f.startMs);
        await m.waitLogs(d, `${d.marker} up`, f.startMs);
        assert.equal(copies(d.marker).length, 1, `${d.marker}: one copy runs`);
        services.push({ d, i });
      }));
      if (f.hog !== undefined) {
        steps.push(m.deploy(f, 'hog', { ...f.hog(m.marker(f, 'hog')), extra: { restart: 'never' } }).then(async (d) => {
          const failed = await m.one(d, (i) => i.status === 'FAILED', 'FAILED by its memory limit', f.startMs + 30_000);
          assert.match(failed.status_detail, /out of memory/, `${d.marker}: the reason`);
        }));
      }
    }
    await settleAll(steps);
    for (const { d, i } of services) assert.ok(byId(i.worker_id), `${d.marker}: its worker ${i.worker_id} is one of the two`);

    // the NodeEngine of the services' worker killed and started again (once per worker that runs
    // some): it re-adopts them all (it says so), each RUNNING on the same worker, one copy each
    for (const w of workers) {
      const mine = services.filter((s) => byId(s.i.worker_id) === w);
      if (mine.length === 0) continue;
      await w.proc.kill('SIGKILL');
      for (const { d } of mine) assert.equal(copies(d.marker).length, 1, `${d.marker} outlives its NodeEngine`);
      const proc = w.start();
      await soleClusterWith(api, 2);
      const adopted = await waitFor(() => /re-adopted (\d+) running instance/.exec(proc.log())?.[1], { timeoutMs: 60_000, message: `the NodeEngine of ${w.host.name} re-adopts its instances` });
      assert.equal(Number(adopted), mine.length, `${w.host.name} re-adopted its ${mine.length} services`);
      await settleAll(mine.map(async ({ d, i }) => {
        await m.waitLogs(d, `${d.marker} up`);
        const again = await m.one(d, (x) => x.status === 'RUNNING', 'RUNNING after its NodeEngine restarted', 30_000);
        assert.equal(again.worker_id, i.worker_id, `${d.marker}: still on the same worker`);
        assert.equal(copies(d.marker).length, 1, `${d.marker}: re-adopted, not started twice`);
      }));
    }
    assert.equal(services.length, fixtures.length, 'every service ran and was re-adopted');

    await m.deleteAll();
    for (const w of workers) {
      await waitFor(async () => ((await w.ctd.ctr(['containers', 'ls', '-q'])).stdout.trim() === '' ? true : undefined), { timeoutMs: 20_000, message: `no container left on ${w.host.name}` }).catch(async (err: unknown) => {
        console.error('DEBUG', (await w.ctd.ctr(['containers', 'ls'])).stdout, (await w.ctd.ctr(['tasks', 'ls'])).stdout, JSON.stringify(await api.call('GET', '/api/applications/')));
        throw err;
      });
    }
  } catch (err) {
    console.error(topo.procs.logs());
    throw err;
  }
});
