/**
 * The workload fields of Oakestra's SLA that we honour (issue 10 point 8): args, added_files,
 * volumes (host, named, csi), storage; good shapes, hostile shapes with path-precise errors, and
 * the warnings for what is not honoured.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { archAllowed, fileNameOf, goArchOf, normalizeArch, parseAddedFiles, parseVolumeSpecs, validateSla, type FieldIssue } from '../src/index.ts';

type Json = Record<string, unknown>;
const MS = 'applications[0].microservices[0]';

function sla(ms: Json, top: Json = {}): Json {
  return {
    sla_version: 'v2.0',
    customerID: 'Admin',
    ...top,
    applications: [{
      application_name: 'app', application_namespace: 'test',
      microservices: [{ microservice_name: 'svc', microservice_namespace: 'test', virtualization: 'container', code: 'docker.io/library/busybox:1', ...ms }],
    }],
  };
}

function ok(doc: Json): FieldIssue[] {
  const r = validateSla(doc);
  assert.ok(r.ok, `expected valid, got ${JSON.stringify(r.ok ? [] : r.errors, null, 1)}`);
  return r.warnings;
}

function errorAt(doc: Json, path: string, message?: RegExp): FieldIssue {
  const r = validateSla(doc);
  assert.equal(r.ok, false, `expected ${path} to be refused`);
  const errs = r.ok ? [] : r.errors;
  const at = errs.filter((e) => e.path === path);
  assert.equal(at.length, 1, `expected one issue at ${path}, got ${JSON.stringify(errs, null, 1)}`);
  const e = at[0] as FieldIssue;
  assert.ok((e.hint ?? '').length > 5, 'with a hint');
  if (message) assert.match(e.message, message);
  return e;
}

test('Oakestra\'s own shapes validate without warnings: added_files URLs, args lists, empty top-level args', () => {
  const w = ok(sla({ added_files: ['https://example.com/repositories/example/asset_1.jpg', 'http://127.0.0.1:8080/b.png'], args: ['--verbose', '-n', '3'] }, { args: [] }));
  assert.deepEqual(w, []);
  assert.deepEqual(ok(sla({ added_files: [], args: [] })), []);
});

test('args and added_files are known fields: no "unknown field" warning', () => {
  const w = ok(sla({ args: ['x'], added_files: [{ url: 'https://h/x.conf', path: '/etc/x.conf', mode: '0600' }] }));
  assert.equal(w.filter((i) => /unknown field/.test(i.message)).length, 0);
});

test('a non-empty top-level args is warned about (not used)', () => {
  const w = ok(sla({}, { args: ['a'] }));
  assert.deepEqual(w.map((i) => i.path), ['args']);
});

test('args must be a list of strings, at its path', () => {
  errorAt(sla({ args: '--verbose' }), `${MS}.args`, /must be a list/);
  errorAt(sla({ args: ['ok', 7] }), `${MS}.args[1]`, /must be a string/);
});

test('hostile added_files are refused with path-precise errors', () => {
  errorAt(sla({ added_files: 'https://h/x' }), `${MS}.added_files`, /must be a list/);
  errorAt(sla({ added_files: ['file:///etc/shadow'] }), `${MS}.added_files[0]`, /only http and https/);
  errorAt(sla({ added_files: ['not a url'] }), `${MS}.added_files[0]`, /not a URL/);
  errorAt(sla({ added_files: ['https://user:pw@h/x.txt'] }), `${MS}.added_files[0]`, /user name or password/);
  errorAt(sla({ added_files: ['https://h/'] }), `${MS}.added_files[0]`, /does not end in a file name/);
  errorAt(sla({ added_files: ['https://h/%2e%2e'] }), `${MS}.added_files[0]`, /does not end in a file name/);
  errorAt(sla({ added_files: [42] }), `${MS}.added_files[0]`, /URL string or an object/);
  errorAt(sla({ added_files: [{ path: '/etc/x' }] }), `${MS}.added_files[0].url`, /needs a url/);
  errorAt(sla({ added_files: [{ url: 'https://h/x', path: '../../etc/passwd' }] }), `${MS}.added_files[0].path`, /without/);
  errorAt(sla({ added_files: [{ url: 'https://h/x', path: '/etc/../../x' }] }), `${MS}.added_files[0].path`);
  errorAt(sla({ added_files: [{ url: 'https://h/x', path: 'relative' }] }), `${MS}.added_files[0].path`, /without/);
  errorAt(sla({ added_files: [{ url: 'https://h/x', path: '/' }] }), `${MS}.added_files[0].path`);
  errorAt(sla({ added_files: [{ url: 'https://h/x', path: '/x', mode: '4755' }] }), `${MS}.added_files[0].mode`, /octal/);
  errorAt(sla({ added_files: [{ url: 'https://h/x', path: '/x', owner: 'root' }] }), `${MS}.added_files[0].owner`, /not a field/);
  errorAt(sla({ added_files: ['https://h/a.txt', 'https://other/a.txt'] }), `${MS}.added_files[1]`, /two added files land at "a.txt"/);
  errorAt(sla({ added_files: [`https://h/${'a'.repeat(3000)}`] }), `${MS}.added_files[0]`, /at most 2048/);
  const many = Array.from({ length: 33 }, (_, i) => `https://h/f${i}`);
  const r = validateSla(sla({ added_files: many }));
  assert.equal(r.ok, false);
  assert.match(JSON.stringify(r.ok ? [] : r.errors), /at most 32 are allowed \(limit max_added_files\)/);
});

test('a process\'s added file path is relative to its work dir', () => {
  const p = { virtualization: 'process', code: '/bin/sh' };
  ok(sla({ ...p, added_files: [{ url: 'https://h/x', path: 'conf/app.json' }] }));
  errorAt(sla({ ...p, added_files: [{ url: 'https://h/x', path: 'conf/../../x' }] }), `${MS}.added_files[0].path`);
  const parsed = parseAddedFiles(['https://h/dir/run.sh?x=1'], 'added_files', 'process');
  assert.deepEqual(parsed.items, [{ url: 'https://h/dir/run.sh?x=1', path: 'run.sh', mode: 0o644, explicit: false }]);
  assert.equal(fileNameOf('https://h/a%20b'), undefined, 'a space is not kept in a file name');
});

test('volumes: host paths, named volumes and Oakestra\'s csi volumes (warned: not honoured)', () => {
  assert.deepEqual(ok(sla({ volumes: ['/srv/a:/a:ro', { source: '/srv/b', target: '/b' }, { name: 'data', target: '/data' }] })), []);
  const w = ok(sla({ volumes: [{ volume_id: 'v1', csi_driver: 'csi.oakestra.io', mount_path: '/mnt', config: { size: 1 } }] }));
  assert.deepEqual(w.map((i) => i.path), [`${MS}.volumes[0]`]);
  assert.match(w[0]?.message ?? '', /not honoured/);
  const p = parseVolumeSpecs([{ name: 'data', mount_path: '/data', read_only: true }, '/h:/c']);
  assert.deepEqual(p.items, [{ kind: 'named', name: 'data', target: '/data', readonly: true }, { kind: 'host', source: '/h', target: '/c', readonly: false }]);
});

test('hostile volumes are refused with path-precise errors', () => {
  errorAt(sla({ volumes: '/a:/b' }), `${MS}.volumes`, /must be a list/);
  errorAt(sla({ volumes: ['/a'] }), `${MS}.volumes[0]`, /host path/);
  errorAt(sla({ volumes: ['/a:/b:rx'] }), `${MS}.volumes[0]`);
  errorAt(sla({ volumes: ['rel:/b'] }), `${MS}.volumes[0]`, /absolute/);
  errorAt(sla({ volumes: ['/a:/'] }), `${MS}.volumes[0]`, /not "\/"/);
  errorAt(sla({ volumes: [{ name: '../etc', target: '/x' }] }), `${MS}.volumes[0].name`, /not 1-63/);
  errorAt(sla({ volumes: [{ name: 'd' }] }), `${MS}.volumes[0].target`, /needs a target/);
  errorAt(sla({ volumes: [{ name: 'd', source: '/srv', target: '/x' }] }), `${MS}.volumes[0]`, /not both/);
  errorAt(sla({ volumes: [{ target: '/x' }] }), `${MS}.volumes[0]`, /needs "name"/);
  errorAt(sla({ volumes: [{ source: '/srv/../etc', target: '/x' }] }), `${MS}.volumes[0].source`);
  errorAt(sla({ volumes: [{ name: 'd', target: '/x', read_only: 'yes' }] }), `${MS}.volumes[0].read_only`);
  errorAt(sla({ volumes: [{ volume_id: '', csi_driver: 'x' }] }), `${MS}.volumes[0].volume_id`);
  errorAt(sla({ volumes: [{ volume_id: 'v', csi_driver: 'x', mount_path: 'rel' }] }), `${MS}.volumes[0].mount_path`);
  errorAt(sla({ volumes: [{ name: 'a', target: '/x' }, { name: 'b', target: '/x/' }] }), `${MS}.volumes[1]`, /two volumes/);
  errorAt(sla({ volumes: [7] }), `${MS}.volumes[0]`);
  errorAt(sla({ virtualization: 'process', code: '/bin/sh', volumes: [{ name: 'd', target: '/d' }] }), `${MS}.volumes`, /containers and microVMs only/);
  // a microvm takes volumes and added files as a container does: no error, no warning about them
  const w = ok(sla({ virtualization: 'microvm', code: 'busybox', volumes: [{ name: 'd', target: '/d' }, '/srv/x:/x:ro'], added_files: [{ url: 'https://example.com/a.conf', path: '/etc/a.conf' }] }));
  assert.deepEqual(w.filter((x) => /volumes|added_files/.test(x.path)), []);
});

test('storage: a warning naming why where it is not enforced (containers), none for processes', () => {
  const w = ok(sla({ storage: 100 }));
  assert.deepEqual(w.map((i) => i.path), [`${MS}.storage`]);
  assert.match(w[0]?.message ?? '', /not enforced for container: .*overlayfs/);
  assert.deepEqual(ok(sla({ storage: 0 })), []);
  assert.deepEqual(ok(sla({ virtualization: 'process', code: '/bin/sh', storage: 10 })), []);
  errorAt(sla({ storage: -1 }), `${MS}.storage`, /negative/);
});

test('arch: Oakestra\'s list is a known field; a unikernel\'s code URLs match it by index', () => {
  const uni = { virtualization: 'unikernel', code: 'http://127.0.0.1:8080/x86.tar.gz,http://127.0.0.1:8080/arm.tar.gz' };
  assert.deepEqual(ok(sla({ ...uni, arch: ['amd64', 'arm64'] })), []);
  assert.deepEqual(ok(sla({ arch: ['amd64'] })), [], 'any virtualization may list architectures');
  assert.deepEqual(ok(sla({ arch: [] })), [], 'an empty list: any');
  errorAt(sla({ ...uni, arch: ['amd64'] }), `${MS}.arch`, /2 comma-separated URLs but arch lists 1/);
  errorAt(sla(uni), `${MS}.code`, /arch lists 0/);
});

test('hostile arch lists are refused at their path', () => {
  errorAt(sla({ arch: 'amd64' }), `${MS}.arch`);
  errorAt(sla({ arch: ['amd64', 'x86 64'] }), `${MS}.arch[1]`);
  errorAt(sla({ arch: ['a'.repeat(33)] }), `${MS}.arch[0]`);
  errorAt(sla({ arch: ['../etc'] }), `${MS}.arch[0]`);
  errorAt(sla({ arch: Array.from({ length: 17 }, () => 'amd64') }), `${MS}.arch`);
});

test('architecture names: the kernel\'s read as Go\'s; a worker that reported none matches no list', () => {
  assert.deepEqual(['x86_64', 'AMD64', ' aarch64 ', 'armv7l', 'i686', 'mips'].map(normalizeArch), ['amd64', 'amd64', 'arm64', 'arm', '386', 'mips']);
  // Node's names (the drivers read process.arch through the same table)
  assert.deepEqual(['x64', 'ia32', 'mipsel', 'loongarch64'].map(normalizeArch), ['amd64', '386', 'mipsle', 'loong64']);
  assert.deepEqual(['ppc64', 'x64', 'ppc64le'].map(goArchOf), ['ppc64le', 'amd64', 'ppc64le']);
  assert.equal(normalizeArch('ppc64'), 'ppc64', 'an SLA\'s ppc64 is Go\'s big-endian one');
  assert.equal(archAllowed(['x86_64'], 'amd64'), true);
  assert.equal(archAllowed(['arm64'], 'amd64'), false);
  assert.equal(archAllowed(undefined, undefined), true);
  assert.equal(archAllowed([], 'riscv64'), true);
  assert.equal(archAllowed(['amd64'], undefined), false);
  assert.equal(archAllowed(['amd64'], ''), false);
});
