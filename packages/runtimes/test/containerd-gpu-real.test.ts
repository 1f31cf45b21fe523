/**
 * GPU access for containers through real containerd and runc, on a machine without a GPU: a CDI
 * spec of kind nvidia.com/gpu whose device nodes are stand-ins (/dev/zero as "GPU 0", /dev/full as
 * "GPU 1") proves that the devices, the cgroup device rules, the mounts, the hooks and the
 * environment written into the OCI spec are what the container gets; without CDI and hook the
 * start fails with the reason and leaves nothing behind.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildBusyboxImage, startContainerd, startRegistry, tmpDir, waitFor } from '@oak/testkit';
import type { ContainerdInstance, RegistryInstance, TmpDir } from '@oak/testkit';
import { ContainerdRuntime } from '../src/containerd/index.ts';
import { RuntimeError } from '../src/types.ts';
import type { InstanceExit, InstanceSpec } from '../src/types.ts';

let ctd: ContainerdInstance;
let reg: RegistryInstance;
let dir: TmpDir;
let image: string;
let cdiDir: string;
const exits: InstanceExit[] = [];
const runtimes: ContainerdRuntime[] = [];

function newRuntime(cdiDirs: string[]): ContainerdRuntime {
  const r = new ContainerdRuntime({ socket: ctd.socket, namespace: ctd.namespace, dataDir: dir.path, portBindAddress: '127.0.0.1', stopGraceMs: 1000, cdiDirs, nvidiaHookPaths: [join(dir.path, 'no-hook')] });
  r.onExit((e) => exits.push(e));
  runtimes.push(r);
  return r;
}

before(async () => {
  ctd = await startContainerd();
  reg = await startRegistry();
  dir = await tmpDir('oak-ctd-gpu');
  image = await buildBusyboxImage(reg);
  cdiDir = join(dir.path, 'cdi');
  await mkdir(cdiDir);
  await writeFile(join(dir.path, 'libcuda-fake.so'), 'fake driver library\n');
  const spec = {
    cdiVersion: '0.5.0',
    kind: 'nvidia.com/gpu',
    devices: [
      { name: '0', containerEdits: { deviceNodes: [{ path: '/dev/nvidia0', hostPath: '/dev/zero' }] } },
      { name: '1', containerEdits: { deviceNodes: [{ path: '/dev/nvidia1', hostPath: '/dev/full' }] } },
      // numbers given, no host node: the NVIDIA major with a minor no driver serves here
      { name: '2', containerEdits: { deviceNodes: [{ path: '/dev/nvidia2', type: 'c', major: 195, minor: 2, permissions: 'rw' }] } },
    ],
    containerEdits: {
      env: ['NVIDIA_FAKE=from-cdi'],
      mounts: [{ hostPath: join(dir.path, 'libcuda-fake.so'), containerPath: '/usr/lib/libcuda-fake.so', options: ['ro', 'nosuid', 'nodev', 'bind'] }],
      hooks: [{ hookName: 'createRuntime', path: '/bin/sh', args: ['sh', '-c', `cat > ${join(dir.path, 'hook-state.json')}`] }],
    },
  };
  await writeFile(join(cdiDir, 'nvidia.json'), JSON.stringify(spec));
});

after(async () => {
  for (const r of runtimes) {
    for (const s of await r.list().catch(() => [])) await r.stop(s.id).catch(() => undefined);
    await r.close();
  }
  await ctd?.stop();
  await reg?.stop();
  await dir?.remove();
});

let n = 0;
function spec(o: Partial<InstanceSpec> = {}): InstanceSpec {
  n++;
  const job = 'app.test.gpu.test';
  return { id: `${job}.instance.${n}`, job_name: job, instance_number: n, virtualization: 'container', code: image, env: [], ports: [], one_shot: true, labels: { 'oak.gpus': '0' }, ...o };
}

async function logText(r: ContainerdRuntime, id: string): Promise<string> {
  const lines: string[] = [];
  for await (const l of r.logs(id)) lines.push(l);
  return lines.join('\n');
}

test('CDI: the container gets its GPU device (and not the other), the mounts, the hook and the environment', async () => {
  const rt = newRuntime([cdiDir]);
  const s = spec({
    gpus: [{ index: 0, uuid: '' }],
    cmd: ['sh', '-c', 'head -c 3 /dev/nvidia0 | od -An -tx1; echo "env=$NVIDIA_FAKE"; cat /usr/lib/libcuda-fake.so; ls /dev/nvidia1 2>/dev/null || echo "no nvidia1"'],
  });
  await rt.start(s);
  const ex = await waitFor(() => exits.find((e) => e.id === s.id), { timeoutMs: 20_000, message: 'exit' });
  const out = await logText(rt, s.id);
  assert.equal(ex.state, 'COMPLETED', out);
  assert.match(out, /00 00 00/, 'GPU 0 (here /dev/zero) is readable as /dev/nvidia0');
  assert.match(out, /env=from-cdi/);
  assert.match(out, /fake driver library/);
  assert.match(out, /no nvidia1/, 'GPU 1 is not given');
  const state = JSON.parse(readFileSync(join(dir.path, 'hook-state.json'), 'utf8')) as { id: string };
  assert.equal(typeof state.id, 'string', 'the CDI createRuntime hook ran with the container state');
  await rt.stop(s.id);
});

test('CDI: the device cgroup allows the GPU given and no other', async (t) => {
  const list = (id: string) => `/sys/fs/cgroup/devices/${ctd.namespace}/${id}/devices.list`;
  const rt = newRuntime([cdiDir]);
  const s = spec({ gpus: [{ index: 2, uuid: '' }], cmd: ['sleep', '60'], one_shot: false });
  await rt.start(s);
  try {
    if (!existsSync(list(s.id))) {
      t.skip('no cgroup v1 devices controller here (on cgroup v2 runc enforces the rules with eBPF)');
      return;
    }
    const rules = readFileSync(list(s.id), 'utf8').split('\n');
    assert.ok(rules.includes('c 195:2 rw'), `GPU 2 (195:2, rw as the CDI spec says) is allowed: ${rules.join(' | ')}`);
    assert.ok(!rules.includes('a *:* rwm'), 'not every device');
    assert.deepEqual(rules.filter((r) => r.startsWith('c 195:')), ['c 195:2 rw'], 'no other NVIDIA device');
  } finally {
    await rt.stop(s.id);
  }
});

test('no CDI spec and no NVIDIA hook: the start fails with what is missing, and nothing is left behind', async () => {
  const rt = newRuntime([join(dir.path, 'empty-cdi')]);
  const s = spec({ gpus: [{ index: 0, uuid: 'GPU-aaaa' }], cmd: ['true'] });
  await assert.rejects(rt.start(s), (e: unknown) => e instanceof RuntimeError && e.reason === 'gpu_unavailable' && /no CDI spec of kind nvidia.com\/gpu .* and no nvidia-container-runtime-hook/.test(e.message));
  assert.equal(await rt.status(s.id), undefined);
  assert.ok(!(await rt.list()).some((x) => x.id === s.id));
  // a GPU the CDI spec does not name
  const rt2 = newRuntime([cdiDir]);
  const s2 = spec({ gpus: [{ index: 7, uuid: '' }], cmd: ['true'] });
  await assert.rejects(rt2.start(s2), /no CDI device nvidia.com\/gpu=7 \(the CDI specs name 0, 1, 2\)/);
  assert.equal(existsSync(join(dir.path, 'logs', `${s2.id}.log`)), false);
});
