/**
 * What the cluster's aggregate costs at N workers (issue 13 point 2), in this process: a ClusterCore
 * with N registered workers that reported, then `rounds` builds of the aggregate and their link
 * encoding, and `reports` information reports. Usage: node --import tsx bench/tools/aggregate-cost.ts [N] [rounds]
 */
import { encodeLinkMessage } from '@oak/contracts';
import { ClusterCore } from '../../apps/cluster/src/core.ts';
import { information, registration } from '../../apps/cluster/test/fixtures.ts';

const n = Number(process.argv[2] ?? 10_000);
const rounds = Number(process.argv[3] ?? 20);
const core = new ClusterCore({});
const t0 = Date.now();
for (let i = 0; i < n; i++) {
  const id = `w-${i.toString(16).padStart(6, '0')}-${(i * 2654435761 % 4294967296).toString(36)}`;
  core.register(id, registration(id), t0);
  core.information(id, information(), t0);
}
const ids = [...core.workers.keys()];
const time = (label: string, f: () => void, k: number): void => {
  f();
  const s = process.hrtime.bigint();
  for (let i = 0; i < k; i++) f();
  const ms = Number(process.hrtime.bigint() - s) / 1e6 / k;
  console.log(`${label}: ${ms.toFixed(3)} ms`);
};
time(`aggregate() at ${n} workers`, () => { core.aggregate(); }, rounds);
time('aggregate() + encode', () => { encodeLinkMessage({ type: 'aggregate', resources: core.aggregate() }); }, rounds);
let j = 0;
time('one information report (per report)', () => {
  for (let i = 0; i < 1000; i++) { const id = ids[j++ % ids.length] as string; core.information(id, information(), Date.now()); }
}, Math.max(1, Math.floor(rounds / 4)));
console.log('(the last line is per 1000 reports)');
