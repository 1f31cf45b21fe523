import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectGpus, MAX_GPU_NAME, MAX_GPUS, parseNvidiaProcInformation, parseNvidiaSmi } from '../src/index.ts';

const SMI = `0, NVIDIA A100-SXM4-40GB, 40960, GPU-8f3c2a1e-9d4b-11ee-be56-0242ac120002
1, NVIDIA A100-SXM4-40GB, 40960, GPU-9a1b2c3d-9d4b-11ee-be56-0242ac120002
`;

test('nvidia-smi csv: index, model, memory and uuid of each GPU', () => {
  assert.deepEqual(parseNvidiaSmi(SMI), [
    { index: 0, name: 'NVIDIA A100-SXM4-40GB', memory_mb: 40960, uuid: 'GPU-8f3c2a1e-9d4b-11ee-be56-0242ac120002' },
    { index: 1, name: 'NVIDIA A100-SXM4-40GB', memory_mb: 40960, uuid: 'GPU-9a1b2c3d-9d4b-11ee-be56-0242ac120002' },
  ]);
});

test('nvidia-smi csv: names with commas, [N/A] memory, junk lines, duplicates, order', () => {
  const out = parseNvidiaSmi('\r\n3, Tesla T4, 15360, GPU-aaaa\r\n' + 'No devices were found\n' + '1, Quadro, RTX, 8000, [N/A], GPU-bbbb\n' + 'x, bad, 1, GPU-c\n3, dup, 1, GPU-d\n');
  assert.deepEqual(out, [
    { index: 1, name: 'Quadro, RTX, 8000', memory_mb: 0, uuid: 'GPU-bbbb' },
    { index: 3, name: 'Tesla T4', memory_mb: 15360, uuid: 'GPU-aaaa' },
  ]);
  assert.deepEqual(parseNvidiaSmi(''), []);
  assert.deepEqual(parseNvidiaSmi('NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'), []);
});

test('nvidia-smi csv: hostile output is bounded (device count, name length, control characters, uuid shape)', () => {
  const many = Array.from({ length: 500 }, (_, i) => `${i}, ${'X'.repeat(1000)}\u0007, 99999999999, not-a-uuid`).join('\n');
  const out = parseNvidiaSmi(many);
  assert.equal(out.length, MAX_GPUS);
  for (const g of out) {
    assert.ok(g.name.length <= MAX_GPU_NAME);
    assert.doesNotMatch(g.name, /\u0007/);
    assert.equal(g.uuid, '');
    assert.equal(g.memory_mb, 0);
  }
});

const PROC = `Model: \t\t NVIDIA GeForce RTX 3090
IRQ:   \t\t 150
GPU UUID: \t GPU-12345678-abcd-ef01-2345-6789abcdef01
Video BIOS: \t 94.02.42.00.a9
Bus Type: \t PCIe
DMA Size: \t 47 bits
DMA Mask: \t 0x7fffffffffff
Bus Location: \t 0000:01:00.0
Device Minor: \t 2
GPU Excluded:\t No
`;

test('/proc/driver/nvidia/gpus/*/information: model, uuid and minor number', () => {
  assert.deepEqual(parseNvidiaProcInformation(PROC), { index: 2, name: 'NVIDIA GeForce RTX 3090', memory_mb: 0, uuid: 'GPU-12345678-abcd-ef01-2345-6789abcdef01' });
  assert.equal(parseNvidiaProcInformation('Model: x\n'), undefined);
  assert.equal(parseNvidiaProcInformation('Device Minor: -1\n'), undefined);
});

test('detectGpus: a fake nvidia-smi on a path, the /proc fallback, and nothing at all', async () => {
  const dir = mkdtempSync(join(tmpdir(), `oak-gpu-${process.pid}-`));
  try {
    const smi = join(dir, 'nvidia-smi');
    writeFileSync(smi, `#!/bin/sh\n[ "$1" = "--query-gpu=index,name,memory.total,uuid" ] && [ "$2" = "--format=csv,noheader,nounits" ] || exit 9\ncat <<'X'\n${SMI}X\n`);
    chmodSync(smi, 0o755);
    const gpus = await detectGpus({ nvidiaSmi: smi, procDir: join(dir, 'none') });
    assert.deepEqual(gpus.map((g) => [g.index, g.memory_mb]), [[0, 40960], [1, 40960]]);

    // a failing tool (driver not loaded): the driver's files are read instead
    const failing = join(dir, 'failing-smi');
    writeFileSync(failing, '#!/bin/sh\necho "NVIDIA-SMI has failed" >&2\nexit 9\n');
    chmodSync(failing, 0o755);
    const proc = join(dir, 'proc');
    mkdirSync(join(proc, '0000:01:00.0'), { recursive: true });
    writeFileSync(join(proc, '0000:01:00.0', 'information'), PROC);
    mkdirSync(join(proc, 'not-a-gpu'));
    const viaProc = await detectGpus({ nvidiaSmi: failing, procDir: proc });
    assert.deepEqual(viaProc.map((g) => [g.index, g.name]), [[2, 'NVIDIA GeForce RTX 3090']]);

    // no tool, no driver: no GPUs and no error
    assert.deepEqual(await detectGpus({ nvidiaSmi: join(dir, 'absent'), procDir: join(dir, 'absent-proc') }), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
