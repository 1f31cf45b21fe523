/** Instance events merged into service lists (src/views/applications/merge.ts): a late list never undoes newer events. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { InstanceDoc, InstanceState, ServiceDoc } from '@oak/contracts';
import { applyInstance, replayInstances, type InstanceEvent, type Received } from '../src/views/applications/merge.ts';

const inst = (n: number, status: InstanceState, at: string): InstanceDoc => ({ instance_number: n, status, status_detail: '', cluster_id: 'c', worker_id: 'w', publicip: null, created_at: at, updated_at: at });
const svc = (list: InstanceDoc[]): ServiceDoc => ({ microserviceID: 's1', applicationID: 'a1', instance_list: list } as unknown as ServiceDoc);
const ev = (i: InstanceDoc): InstanceEvent => ({ type: 'instance', microserviceID: 's1', applicationID: 'a1', job_name: 'a.b.c.d', instance: i });
const status = (l: ServiceDoc[], n: number): string | undefined => l[0]?.instance_list.find((i) => i.instance_number === n)?.status;

test('an event replaces its instance, an older one does not', () => {
  const list = [svc([inst(0, 'RUNNING', '2026-12-03T10:00:02.000Z')])];
  assert.equal(status(applyInstance(list, ev(inst(0, 'FAILED', '2026-12-03T10:00:03.000Z'))), 0), 'FAILED');
  assert.equal(status(applyInstance(list, ev(inst(0, 'NODE_SCHEDULED', '2026-12-03T10:00:01.000Z'))), 0), 'RUNNING');
  // a new instance is added, in order
  assert.deepEqual(applyInstance(list, ev(inst(1, 'REQUESTED', '2026-12-03T10:00:01.000Z')))[0]?.instance_list.map((i) => i.instance_number), [0, 1]);
});

test('a list read while events arrived (a rolling update) gets them again; events from before the request do not count', () => {
  // the root read the list at 10:00:01 (instance 2 scheduled), the answer came after instance 2's RUNNING event
  const late = [svc([inst(0, 'RUNNING', '2026-12-03T10:00:00.000Z'), inst(2, 'NODE_SCHEDULED', '2026-12-03T10:00:01.000Z')])];
  const recent: Received[] = [
    { at: 900, e: ev(inst(0, 'FAILED', '2026-12-03T09:59:00.000Z')) },
    { at: 1500, e: ev(inst(2, 'RUNNING', '2026-12-03T10:00:02.000Z')) },
    // an event that crossed the request: older than what the list says
    { at: 1600, e: ev(inst(0, 'NODE_SCHEDULED', '2026-12-03T09:59:59.000Z')) },
  ];
  const out = replayInstances(late, recent, 'a1', 1000);
  assert.equal(status(out, 2), 'RUNNING', 'the newer event wins over the late list');
  assert.equal(status(out, 0), 'RUNNING', 'an older event does not undo the list');
  assert.equal(status(replayInstances(late, recent, 'other-app', 1000), 2), 'NODE_SCHEDULED', 'events of another application are not applied');
});
