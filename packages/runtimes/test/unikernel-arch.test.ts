/**
 * The unikernel driver picks its URL by the contracts' one architecture table (issue 10): the
 * names the scheduler and the NodeEngine accept for a worker are exactly those that pick its URL,
 * and the image pullers ask for the same Go name. Pure: no qemu, no lock.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { arch } from 'node:os';
import { archAllowed, goArchOf, normalizeArch } from '@oak/contracts';
import { goArch } from '../src/containerd/image.ts';
import { pickUrl } from '../src/index.ts';

const NAMES = ['amd64', 'x86_64', 'X86-64', 'x64', ' AMD64 ', 'arm64', 'aarch64', 'arm', 'armv7l', 'armhf', '386', 'i386', 'i686', 'ia32', 'riscv64', 'ppc64le', 's390x', 'loong64', 'mipsle', 'mips', 'sparc'];
const HOSTS = ['x64', 'arm64', 'arm', 'ia32', 'riscv64', 'ppc64', 's390x', 'loong64', 'mipsel', 'amd64', 'aarch64'];

test('pickUrl matches an arch entry exactly when the scheduler\'s archAllowed does, for every name and host', () => {
  for (const host of HOSTS) {
    for (const name of NAMES) {
      const list = [name, 'none-such'];
      const allowed = archAllowed([name], goArchOf(host));
      let picked: string | undefined;
      try {
        picked = pickUrl('http://a/first,http://a/second', list, host);
      } catch (e) {
        assert.match(String(e), /no URL for this worker's architecture/, `${host} / ${name}`);
      }
      assert.equal(picked === 'http://a/first', allowed, `host ${host}, arch entry ${JSON.stringify(name)}: pickUrl ${picked ?? 'refused'}, archAllowed ${String(allowed)}`);
    }
  }
});

test('Node\'s names map to Go\'s through the one table; the unikernel error names the Go name', () => {
  assert.deepEqual(['x64', 'ia32', 'arm64', 'arm', 'ppc64', 'mipsel', 'loong64', 's390x', 'riscv64'].map(goArchOf), ['amd64', '386', 'arm64', 'arm', 'ppc64le', 'mipsle', 'loong64', 's390x', 'riscv64']);
  assert.equal(goArchOf('amd64'), 'amd64');
  assert.equal(normalizeArch('i686'), goArchOf('ia32'));
  assert.equal(pickUrl('http://a/x,http://a/y', ['i686', 'x86_64'], 'ia32'), 'http://a/x', 'a 32-bit x86 host matches i686 (the old driver table knew only x64 and arm64)');
  assert.throws(() => pickUrl('http://a/x,http://a/y', ['arm64', 'riscv64'], 'x64'), /architecture \(amd64\)/);
  assert.equal(goArch(), goArchOf(arch()));
  assert.equal(pickUrl('http://a/x,http://a/y', ['riscv64', goArch()]), 'http://a/y', 'the default host is this machine');
});
