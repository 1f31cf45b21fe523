/** The editor's path → line mapping (src/lib/json-locate.ts), against the validator's own paths. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateSla } from '@oak/contracts';
import { lineCol, locatePaths, whereIs } from '../src/lib/json-locate.ts';

const text = `{
  "sla_version": "v2.0",
  "customerID": "Admin",
  "applications": [
    {
      "application_name": "a",
      "application_namespace": "b",
      "microservices": [
        { "microservice_name": "s", "microservice_namespace": "b", "virtualization": "process", "code": "/bin/sh", "memory": -1, "vcpus": 1 },
        {
          "microservice_name": "t",
          "microservice_namespace": "b",
          "virtualization": "process",
          "code": "/bin/sh",
          "memory": 1,
          "vcpus": "lots",
          "odd key": [1, {"x\\"y": 2}]
        }
      ]
    }
  ]
}`;

test('every issue of the validator lands on the line of its field', () => {
  const r = validateSla(JSON.parse(text));
  assert.equal(r.ok, false);
  const map = locatePaths(text);
  const lines = Object.fromEntries((r.ok ? [] : r.errors).map((e) => [e.path, whereIs(map, e.path)?.line]));
  assert.equal(lines['applications[0].microservices[0].memory'], 9);
  assert.equal(lines['applications[0].microservices[1].vcpus'], 16);
  assert.equal(map.get('applications[0].microservices[1]["odd key"][1]["x\\"y"]')?.line, 17);
});

test('a missing field points at its object; an unknown path at the document', () => {
  const map = locatePaths(text);
  assert.equal(whereIs(map, 'applications[0].microservices[1].port')?.line, 10);
  assert.equal(whereIs(map, 'nothing.here'), undefined);
});

test('broken or hostile text does not throw and maps what it can', () => {
  for (const t of ['', '{', '{"a": [1, 2', '"', '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[', '{"a":1}'.repeat(1000)]) {
    assert.doesNotThrow(() => locatePaths(t));
  }
  assert.equal(locatePaths('{"a": {"b": [0, 1]}}').get('a.b[1]')?.line, 1);
  assert.deepEqual(lineCol('ab\ncd', 4), { line: 2, col: 2, offset: 4 });
});
