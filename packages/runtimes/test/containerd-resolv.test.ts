import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildSpec } from '../src/containerd/index.ts';

type Mount = { destination: string; source: string; options: string[] };
const mountsOf = (s: Record<string, unknown>): Mount[] => s['mounts'] as Mount[];

test('a container shows the NodeEngine\'s resolv.conf read-only when the spec names one, else the host\'s', () => {
  const base = { id: 'x', namespace: 'oak', image: { Cmd: ['sh'] }, env: [], limitSwap: false, netns: '/run/netns/n1' };
  const own = mountsOf(buildSpec({ ...base, resolvConf: '/var/lib/oak/net/resolv.conf' })).filter((m) => m.destination === '/etc/resolv.conf');
  assert.deepEqual(own, [{ destination: '/etc/resolv.conf', type: 'bind', source: '/var/lib/oak/net/resolv.conf', options: ['rbind', 'ro'] }]);
  const host = mountsOf(buildSpec(base)).filter((m) => m.destination === '/etc/resolv.conf');
  assert.equal(host.length, 1);
  assert.equal(host[0]?.source, '/etc/resolv.conf');
  // /etc/hosts stays the host's either way
  assert.ok(mountsOf(buildSpec({ ...base, resolvConf: '/r' })).some((m) => m.destination === '/etc/hosts' && m.source === '/etc/hosts'));
});

test('a relative or dotted resolv.conf path is refused', () => {
  const base = { id: 'x', namespace: 'oak', image: { Cmd: ['sh'] }, env: [], limitSwap: false };
  for (const bad of ['resolv.conf', '../../etc/shadow', '/var/lib/oak/../../etc/shadow', '']) {
    assert.throws(() => buildSpec({ ...base, resolvConf: bad }), /not an absolute path/, bad);
  }
});
