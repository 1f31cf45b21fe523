import { test } from 'node:test';
import assert from 'node:assert/strict';
import { instanceName, jobName, parseInstanceName, serviceDnsName } from '../src/index.ts';

const parts = { application_name: 'clientsrvr', application_namespace: 'test', microservice_name: 'server', microservice_namespace: 'test' };

test('job and instance names follow Oakestra', () => {
  assert.equal(jobName(parts), 'clientsrvr.test.server.test');
  assert.equal(instanceName('clientsrvr.test.server.test', 2), 'clientsrvr.test.server.test.instance.2');
});

test('instance names parse back', () => {
  assert.deepEqual(parseInstanceName('a.b.c.d.instance.12'), { job_name: 'a.b.c.d', instance_number: 12 });
  assert.equal(parseInstanceName('a.b.c.d'), undefined);
  assert.equal(parseInstanceName('a.b.c.d.instance.x'), undefined);
});

test('service DNS names put the service first', () => {
  assert.equal(serviceDnsName(parts), 'server.test.clientsrvr.test.oak');
});
