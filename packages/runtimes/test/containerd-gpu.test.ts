/**
 * GPU devices for containers (issue 10), without a GPU: CDI spec fixtures shaped like
 * `nvidia-ctk cdi generate` output, a fake NVIDIA hook, and the OCI spec buildSpec() writes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSpec, devNumbers, loadCdiSpecs, parseCdiSpec, resolveCdi, resolveGpuAccess, RuntimeError } from '../src/index.ts';
import type { GpuAccess } from '../src/index.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/cdi/', import.meta.url));
const GPU0 = { index: 0, uuid: 'GPU-8f3c2a1e-9d4b-11ee-be56-0242ac120002' };
const GPU1 = { index: 1, uuid: 'GPU-9a1b2c3d-9d4b-11ee-be56-0242ac120002' };

function tmp(): { dir: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `oak-cdi-${process.pid}-`));
  return { dir, done: () => rmSync(dir, { recursive: true, force: true }) };
}

async function rejectsWith(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof RuntimeError && e.reason === 'gpu_unavailable' && re.test(e.message));
}

test('CDI: the fixture directory reads (YAML and JSON); only nvidia.com/gpu specs are used', async () => {
  const { specs, problems } = await loadCdiSpecs([FIXTURES]);
  assert.deepEqual(problems, []);
  assert.deepEqual(specs.map((s) => s.kind).sort(), ['nvidia.com/gpu', 'vendor.example/fpga']);
  const nv = specs.find((s) => s.kind === 'nvidia.com/gpu');
  assert.deepEqual(nv?.devices.map((d) => d.name), ['0', GPU0.uuid, '1', 'all']);
});

test('CDI: GPUs resolve by index, else by UUID; spec-wide edits come once; an unknown GPU names what exists', async () => {
  const { specs } = await loadCdiSpecs([FIXTURES]);
  const r = resolveCdi([GPU0, GPU1], specs);
  assert.deepEqual(r.names, ['nvidia.com/gpu=0', 'nvidia.com/gpu=1']);
  assert.deepEqual(r.deviceNodes.map((d) => d.path), ['/dev/nvidiactl', '/dev/nvidia-uvm', '/dev/nvidia0', '/dev/nvidia1']);
  assert.deepEqual(r.env, ['NVIDIA_VISIBLE_DEVICES=void']);
  assert.equal(r.hooks.length, 1);
  assert.equal(r.mounts.length, 1);
  // a GPU the spec knows only by UUID
  const byUuid = resolveCdi([{ index: 7, uuid: GPU0.uuid }], specs);
  assert.deepEqual(byUuid.names, [`nvidia.com/gpu=${GPU0.uuid}`]);
  assert.throws(() => resolveCdi([{ index: 5, uuid: '' }], specs), (e: unknown) => e instanceof RuntimeError && /nvidia.com\/gpu=5/.test(e.message) && /name 0, 1, GPU-8f3c/.test(e.message));
});

test('CDI: hostile or broken spec files are refused with the file and the field', () => {
  const base = { cdiVersion: '0.5.0', kind: 'nvidia.com/gpu', devices: [{ name: '0', containerEdits: { deviceNodes: [{ path: '/dev/nvidia0' }] } }] };
  const j = (o: unknown) => JSON.stringify(o);
  assert.equal(parseCdiSpec(j(base), 'a.json').devices.length, 1);
  const cases: [string, RegExp][] = [
    ['{', /a.json: not JSON/],
    [j([]), /must be an object/],
    [j({ ...base, kind: 'nvidia' }), /kind "nvidia" is not vendor\/class/],
    [j({ ...base, cdiVersion: 5 }), /cdiVersion/],
    [j({ ...base, devices: [{ name: '../x', containerEdits: {} }] }), /devices\[0\]\.name/],
    [j({ ...base, devices: [{ name: '0', containerEdits: { deviceNodes: [{ path: 'dev/nvidia0' }] } }] }), /deviceNodes\[0\]\.path must be an absolute path/],
    [j({ ...base, devices: [{ name: '0', containerEdits: { deviceNodes: [{ path: '/dev/x', type: 'p' }] } }] }), /type must be c or b/],
    [j({ ...base, devices: [{ name: '0', containerEdits: { deviceNodes: [{ path: '/dev/x', major: -1 }] } }] }), /major must be a whole number/],
    [j({ ...base, containerEdits: { hooks: [{ hookName: 'preStart', path: '/bin/x' }] } }), /hookName "preStart" is not an OCI hook/],
    [j({ ...base, containerEdits: { env: ['NOEQUALS'] } }), /env entry "NOEQUALS" is not KEY=value/],
    [j({ ...base, containerEdits: { mounts: [{ hostPath: '/a', containerPath: 'b' }] } }), /containerPath must be an absolute path/],
    [j({ ...base, devices: Array.from({ length: 1025 }, (_, i) => ({ name: String(i) })) }), /devices must be a list \(at most 1024\)/],
    ['x'.repeat(1024 * 1024 + 1), /larger than/],
  ];
  for (const [text, re] of cases) assert.throws(() => parseCdiSpec(text, 'a.json'), re, text.slice(0, 80));
  // YAML alias bombs stop at the alias limit
  const bomb = 'cdiVersion: 0.5.0\nkind: nvidia.com/gpu\na: &a [x,x,x,x,x,x,x,x,x,x]\n' + Array.from({ length: 200 }, (_, i) => `b${i}: [*a,*a,*a,*a,*a,*a,*a,*a]`).join('\n') + '\ndevices: []\n';
  assert.throws(() => parseCdiSpec(bomb, 'bomb.yaml'), /bomb.yaml: not YAML/);
});

test('CDI: a directory with a broken file still serves the good ones, and says which was bad', async () => {
  const t = tmp();
  try {
    writeFileSync(join(t.dir, 'bad.json'), '{"kind": 1}');
    writeFileSync(join(t.dir, 'good.json'), JSON.stringify({ cdiVersion: '0.5.0', kind: 'nvidia.com/gpu', devices: [{ name: '0', containerEdits: { deviceNodes: [{ path: '/dev/nvidia0', type: 'c', major: 195, minor: 0 }] } }] }));
    writeFileSync(join(t.dir, 'README'), 'not a spec');
    const { specs, problems } = await loadCdiSpecs([t.dir, join(t.dir, 'missing')]);
    assert.equal(specs.length, 1);
    assert.equal(problems.length, 1);
    assert.match(problems[0] as string, /bad.json/);
  } finally {
    t.done();
  }
});

test('device numbers: dev_t split like glibc; a node without numbers is stat()ed on the host', async () => {
  assert.deepEqual(devNumbers(0x0103n), { major: 1, minor: 3 });
  assert.deepEqual(devNumbers((0xc3n << 8n) | 0xffn), { major: 195, minor: 255 });
  // glibc's makedev(0x12345, 0x6789a): major's low 12 bits at 8, high bits at 32; minor's low 8 bits at 0, the rest at 12
  const makedev = (ma: bigint, mi: bigint) => ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
  assert.deepEqual(devNumbers(makedev(0x12345n, 0x6789an)), { major: 0x12345, minor: 0x6789a });
  const access = await resolveGpuAccess([GPU0], { cdiDirs: [FIXTURES], hookPaths: [] });
  assert.equal(access.kind, 'cdi');
  if (access.kind !== 'cdi') return;
  // /dev/nvidia-uvm has hostPath /dev/null in the fixture: char 1:3
  assert.deepEqual(access.devices.find((d) => d.path === '/dev/nvidia-uvm'), { path: '/dev/nvidia-uvm', type: 'c', major: 1, minor: 3, fileMode: undefined, permissions: 'rwm', uid: undefined, gid: undefined });
  assert.deepEqual(access.devices.find((d) => d.path === '/dev/nvidia0')?.major, 195);
  // a node whose host path is missing (driver not loaded) is a clear failure
  const t = tmp();
  try {
    writeFileSync(join(t.dir, 'nv.json'), JSON.stringify({ cdiVersion: '0.5.0', kind: 'nvidia.com/gpu', devices: [{ name: '0', containerEdits: { deviceNodes: [{ path: '/dev/nvidia0', hostPath: join(t.dir, 'nvidia0') }] } }] }));
    await rejectsWith(resolveGpuAccess([GPU0], { cdiDirs: [t.dir], hookPaths: [] }), /CDI device node .*nvidia0: ENOENT/);
    writeFileSync(join(t.dir, 'nvidia0'), 'a file');
    await rejectsWith(resolveGpuAccess([GPU0], { cdiDirs: [t.dir], hookPaths: [] }), /is not a device/);
  } finally {
    t.done();
  }
});

test('no CDI spec: the NVIDIA hook when installed, else a reason that says what is missing', async () => {
  const t = tmp();
  try {
    const hook = join(t.dir, 'nvidia-container-runtime-hook');
    await rejectsWith(resolveGpuAccess([GPU0], { cdiDirs: [join(t.dir, 'cdi')], hookPaths: [hook] }), /no CDI spec of kind nvidia.com\/gpu in .*\/cdi and no nvidia-container-runtime-hook/);
    writeFileSync(hook, '#!/bin/sh\nexit 0\n');
    await rejectsWith(resolveGpuAccess([GPU0], { cdiDirs: [join(t.dir, 'cdi')], hookPaths: [hook] }), /no nvidia-container-runtime-hook/); // not executable
    chmodSync(hook, 0o755);
    const a = await resolveGpuAccess([GPU0, { index: 3, uuid: '' }], { cdiDirs: [join(t.dir, 'cdi')], hookPaths: [join(t.dir, 'absent'), hook] });
    assert.deepEqual(a, { kind: 'hook', path: hook, visible: `${GPU0.uuid},3` });
    // an fpga-only CDI directory is no GPU spec: the hook is used
    const b = await resolveGpuAccess([GPU0], { cdiDirs: [join(FIXTURES, 'none'), t.dir], hookPaths: [hook] });
    assert.equal(b.kind, 'hook');
  } finally {
    t.done();
  }
});

const BASE = { id: 'app.ns.svc.ns.instance.0', namespace: 'oak', image: { Cmd: ['sh'], Env: ['A=1'] }, env: ['B=2'], limitSwap: false };

test('OCI spec with CDI: device nodes, cgroup device rules, mounts, hooks and environment', async () => {
  const gpu = await resolveGpuAccess([GPU1], { cdiDirs: [FIXTURES], hookPaths: [] });
  const spec = buildSpec({ ...BASE, gpu }) as { process: { env: string[] }; mounts: { destination: string; type: string; source: string; options: string[] }[]; linux: { devices: unknown[]; resources: { devices: unknown[] } }; hooks: Record<string, unknown[]> };
  assert.deepEqual(spec.linux.devices, [
    { path: '/dev/nvidiactl', type: 'c', major: 195, minor: 255 },
    { path: '/dev/nvidia-uvm', type: 'c', major: 1, minor: 3 },
    { path: '/dev/nvidia1', type: 'c', major: 195, minor: 1 },
  ]);
  assert.deepEqual(spec.linux.resources.devices, [
    { allow: false, access: 'rwm' },
    { allow: true, type: 'c', major: 195, minor: 255, access: 'rwm' },
    { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' },
    { allow: true, type: 'c', major: 195, minor: 1, access: 'rwm' },
  ]);
  assert.ok(!spec.linux.devices.some((d) => (d as { path: string }).path === '/dev/nvidia0'), 'GPU 0 is not given');
  const lib = spec.mounts.find((m) => m.destination.includes('libcuda'));
  assert.deepEqual(lib, { destination: '/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05', type: 'bind', source: '/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05', options: ['ro', 'nosuid', 'nodev', 'bind'] });
  assert.deepEqual(spec.hooks, { createContainer: [{ path: '/usr/bin/nvidia-ctk', args: ['nvidia-ctk', 'hook', 'update-ldcache', '--folder', '/usr/lib/x86_64-linux-gnu'] }] });
  assert.deepEqual(spec.process.env.slice(1), ['A=1', 'NVIDIA_VISIBLE_DEVICES=void', 'B=2']);
});

test('OCI spec with the NVIDIA hook: prestart hook, and the SLA cannot widen NVIDIA_VISIBLE_DEVICES', () => {
  const gpu: GpuAccess = { kind: 'hook', path: '/usr/bin/nvidia-container-runtime-hook', visible: `${GPU0.uuid}` };
  const spec = buildSpec({ ...BASE, env: ['NVIDIA_VISIBLE_DEVICES=all', 'NVIDIA_DRIVER_CAPABILITIES=all'], gpu }) as { process: { env: string[] }; hooks: unknown; linux: Record<string, unknown> };
  assert.deepEqual(spec.hooks, { prestart: [{ path: '/usr/bin/nvidia-container-runtime-hook', args: ['nvidia-container-runtime-hook', 'prestart'] }] });
  assert.ok(spec.process.env.includes(`NVIDIA_VISIBLE_DEVICES=${GPU0.uuid}`));
  assert.ok(!spec.process.env.includes('NVIDIA_VISIBLE_DEVICES=all'));
  assert.ok(spec.process.env.includes('NVIDIA_DRIVER_CAPABILITIES=all'), 'capabilities are the SLA\'s to choose');
  assert.equal(spec.linux['devices'], undefined, 'the hook adds the devices itself');
});

test('OCI spec without GPUs: no devices, no hooks, nothing NVIDIA', () => {
  const spec = buildSpec(BASE) as Record<string, unknown> & { linux: Record<string, unknown>; process: { env: string[] } };
  assert.equal(spec['hooks'], undefined);
  assert.equal(spec.linux['devices'], undefined);
  assert.ok(!spec.process.env.some((e) => e.startsWith('NVIDIA')));
});
