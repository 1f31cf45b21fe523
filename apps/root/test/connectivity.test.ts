/** connectivity entries of an application's services as scheduler rules (apps/root/src/connectivity.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Microservice } from '@oak/contracts';
import { assignmentOf } from '../src/placement.ts';
import { hasConnectivity, peerRulesOf, type PeerService } from '../src/connectivity.ts';

function svc(id: string, name: string, extra: Partial<Microservice> = {}): PeerService {
  return { id, name, job_name: `app.ns.${name}.ns`, sla: { microservice_name: name, microservice_namespace: 'ns', virtualization: 'container', code: 'x', ...extra } };
}

test('rules both ways: by microservice_name, root id or the SLA\'s microserviceID; bandwidth and rigidness 0 constrain nothing', () => {
  const api = svc('id-api', 'api', { connectivity: [{ target_microservice_id: 'db', con_constraints: [{ type: 'latency', threshold: 20 }] }] });
  const db = svc('id-db', 'db', { microserviceID: '2' });
  const cache = svc('id-cache', 'cache', { connectivity: [{ target_microservice_id: 'id-api', con_constraints: [{ type: 'latency', threshold: 5, rigidness: 0.5 }, { type: 'bandwidth', threshold: 100 }] }] });
  const other = svc('id-x', 'x', { connectivity: [{ target_microservice_id: '2', con_constraints: [{ type: 'latency', threshold: 9, rigidness: 0 }] }] });
  const all = [api, db, cache, other];
  const where: Record<string, string[]> = { 'id-db': ['w2', 'w1', 'w2'], 'id-cache': ['w9'] };
  const rules = peerRulesOf(api, all, (id) => where[id] ?? []);
  assert.deepEqual(rules, [
    { target: 'app.ns.db.ns', threshold_ms: 20, rigidness: 1, workers: ['w1', 'w2'] },
    { target: 'app.ns.cache.ns', threshold_ms: 5, rigidness: 0.5, workers: ['w9'] },
  ]);
  // the db is bound by the api's rule too (bidirectional), found by its SLA microserviceID from x: rigidness 0 gives nothing
  assert.deepEqual(peerRulesOf(db, all, () => ['w5']), [{ target: 'app.ns.api.ns', threshold_ms: 20, rigidness: 1, workers: ['w5'] }]);
  assert.deepEqual(peerRulesOf(other, all, () => []), []);
  assert.equal(hasConnectivity(all), true);
  assert.equal(hasConnectivity([db, svc('a', 'a', { connectivity: [{ target_microservice_id: 'db', con_constraints: [] }] })]), false);
});

test('the assignment carries the rules to the cluster (absent without any)', () => {
  const s = { id: 's1', application_id: 'a', organization_id: 'o', user_id: 'u', job_name: 'app.ns.api.ns', name: 'api', namespace: 'ns', sla: svc('s1', 'api').sla, created_at: '', updated_at: '', service_ip: null, service_ip_v6: null, closest_ip: null, closest_ip_v6: null, version: 1, next_instance: 1 };
  const row = { service_id: 's1', instance_number: 0, status: 'REQUESTED' as const, status_detail: '', cluster_id: null, worker_id: null, publicip: null, instance_ip: null, created_at: '', updated_at: '', instance_ip_v6: null, net: null, service_version: 1, desired: 'run' as const, epoch: 0, replaces: null, status_at: '', last_cluster_id: null, lost_at: null, health: null, restarts: 0 };
  assert.equal(assignmentOf(s, row).peers, undefined);
  assert.equal(assignmentOf(s, row, []).peers, undefined);
  const peers = [{ target: 'app.ns.db.ns', threshold_ms: 20, rigidness: 1, workers: ['w1'] }];
  assert.deepEqual(assignmentOf(s, row, peers).peers, peers);
});
