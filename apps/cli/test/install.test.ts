/**
 * The installer (oak install / install.sh, apps/cli/src/install): validation of every user value
 * (hostile input: newlines, shell and systemd metacharacters are refused before anything is
 * written), the units and environment file it writes, upgrades that keep the data dir, the
 * downgrade refusal, and an uninstall that leaves nothing — into an empty prefix, with a fake
 * artifact (the real artifacts are exercised by e2e/test/install.test.ts).
 */
import { after, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runInstaller } from '../src/install/cli.ts';
import { runOak } from './helpers.ts';
import { compareVersions, InstallError, parseSettings, plain, ROLE_FLAGS, ROLES, servicesOf, unitText, layoutOf } from '../src/install/plan.ts';

const WORKER_TOKEN = `oak1.w.abcd1234.${'s'.repeat(40)}.${'0'.repeat(64)}`;
const CLUSTER_TOKEN = `oak1.c.abcd1234.${'s'.repeat(40)}.${'0'.repeat(64)}`;
const ARCH = process.arch === 'arm64' ? 'arm64' : 'amd64';
const HOSTILE = ['a\nExecStartPre=/bin/sh -c id', 'x;rm -rf /', '$(id)', '`id`', 'a b', '10.0.0.1%n', "a'b", 'a"b', 'a\\b', 'a|b', 'a&b', '../../etc', '\u0000', 'a\rb', 'a>b'];

const dirs: string[] = [];
const tmp = (name: string): string => {
  const d = mkdtempSync(join(tmpdir(), `oak-install-${name}-`));
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** an unpacked artifact of `program` at `version` (only what the installer reads) */
function fakeArtifact(program: string, role: string, version: string, bins: string[]): string {
  const d = join(tmp('artifact'), `oak-${program}-${version}-linux-${ARCH}`);
  mkdirSync(join(d, 'node_modules/x'), { recursive: true });
  writeFileSync(join(d, 'oak-release.json'), JSON.stringify({ program, version, os: 'linux', arch: ARCH, roles: [role], bins: Object.fromEntries(bins.map((b) => [b, `${b}.mjs`])) }));
  for (const b of bins) writeFileSync(join(d, `${b}.mjs`), `console.log(${JSON.stringify(version)})\n`);
  writeFileSync(join(d, 'node_modules/x/index.js'), '');
  return d;
}

const files = (d: string): string[] =>
  existsSync(d) ? readdirSync(d, { recursive: true, withFileTypes: true }).filter((e) => !e.isDirectory()).map((e) => join(e.parentPath, e.name)) : [];

describe('installer: validation', () => {
  it('refuses every hostile value for every string setting of every role, naming the flag', () => {
    const stringFlags = (role: (typeof ROLES)[number]): string[] => ROLE_FLAGS[role].filter((f) => f !== 'netmanager');
    let checked = 0;
    for (const role of ROLES) {
      for (const flag of stringFlags(role)) {
        for (const bad of HOSTILE) {
          assert.throws(() => parseSettings(role, { [flag]: bad }), (e: unknown) => e instanceof InstallError && e.code === 'INVALID_INPUT' && e.message.includes(`--${flag}`), `${role} --${flag} ${JSON.stringify(bad)}`);
          checked++;
        }
      }
    }
    assert.ok(checked > 200);
  });

  it('accepts the usual values', () => {
    const s = parseSettings('worker', { cluster: '192.168.1.10:10100', token: WORKER_TOKEN, name: 'pi-4', location: '48.1,11.6', netmanager: true, 'data-dir': '/srv/oak/' });
    assert.deepEqual([s.cluster, s.clusterPort, s.name, s.location, s.netmanager, s.dataDir], ['192.168.1.10', 10100, 'pi-4', '48.1,11.6', true, '/srv/oak']);
    assert.equal(parseSettings('cluster', { root: 'root.example.org', token: CLUSTER_TOKEN, name: 'c1' }).root, 'root.example.org:50052');
    assert.equal(parseSettings('cluster', { root: '[fd00::1]:6000', token: CLUSTER_TOKEN, name: 'c1' }).root, '[fd00::1]:6000');
  });

  it('refuses a token of the wrong kind, a flag of another role, a port out of range, a relative path', () => {
    assert.throws(() => parseSettings('worker', { token: CLUSTER_TOKEN }), /not a worker join token/);
    assert.throws(() => parseSettings('root', { cluster: '10.0.0.1' }), /--cluster does not apply to a root/);
    assert.throws(() => parseSettings('worker', { cluster: '10.0.0.1:70000' }), /--cluster/);
    assert.throws(() => parseSettings('root', { 'data-dir': 'var/lib/oak' }), /--data-dir/);
    assert.throws(() => parseSettings('worker', { location: '91,0' }), /--location/);
  });

  it('the unit writer refuses a value that escaped validation (second line of defence)', () => {
    // (a .. path is plain text: validPath refuses it, the writer need not)
    for (const bad of HOSTILE.filter((h) => h !== '../../etc')) assert.throws(() => plain('x', bad), InstallError);
    const l = layoutOf('worker', '/', {});
    const svc = servicesOf('worker', '/usr/bin/node', l, { cluster: '10.0.0.1', clusterPort: 10100, token: WORKER_TOKEN, name: 'x\nUser=root' }, '1.0.0');
    assert.throws(() => unitText(svc[0] as (typeof svc)[number], { envFile: l.envFile, workingDir: l.dataDir }), InstallError);
  });

  it('orders versions', () => {
    assert.ok(compareVersions('0.2.0', '0.1.9') > 0);
    assert.ok(compareVersions('0.10.0', '0.9.0') > 0);
    assert.ok(compareVersions('1.0.0-rc.1', '1.0.0') < 0);
    assert.equal(compareVersions('1.2.3', '1.2.3'), 0);
  });
});

describe('installer: install, upgrade, uninstall into an empty prefix', () => {
  it('worker: unit and 0600 env file (token only there), data dir 0700, upgrade keeps data and settings, downgrade refused, uninstall leaves only data, --purge nothing', (t: TestContext) => {
    const prefix = tmp('prefix');
    const v1 = fakeArtifact('node-engine', 'worker', '0.1.0', ['NodeEngine', 'NetManager']);
    const base = ['--prefix', prefix, '--artifact-dir'];
    const r1 = runInstaller(['install', 'worker', ...base, v1, '--cluster', '10.1.2.3', '--token', WORKER_TOKEN, '--name', 'w1', '--netmanager']);
    assert.equal(r1.code, 0, r1.stderr);
    const unitDir = join(prefix, 'etc/systemd/system');
    const worker = readFileSync(join(unitDir, 'oak-worker.service'), 'utf8');
    assert.match(worker, /^ExecStart=\S+ \S+\/opt\/oak\/node-engine\/current\/NodeEngine\.mjs -a 10\.1\.2\.3 -p 10100 -n 6000 --data-dir \S+ --name w1$/m);
    assert.match(worker, /^KillMode=process$/m);
    assert.match(worker, /^After=.*oak-netmanager\.service/m);
    assert.ok(!worker.includes(WORKER_TOKEN), 'the token is not in the world-readable unit');
    assert.ok(existsSync(join(unitDir, 'oak-netmanager.service')));
    const env = join(prefix, 'etc/oak/worker.env');
    assert.equal(statSync(env).mode & 0o777, 0o600);
    assert.match(readFileSync(env, 'utf8'), new RegExp(`^OAK_JOIN_TOKEN=${WORKER_TOKEN}$`, 'm'));
    const data = join(prefix, 'var/lib/oak/worker');
    assert.equal(statSync(data).mode & 0o777, 0o700);
    assert.equal(statSync(join(prefix, 'opt/oak/node-engine/install.json')).mode & 0o777, 0o600);

    // every generated unit passes systemd's own check where systemd-analyze exists
    let analyze = true;
    try {
      execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    } catch {
      analyze = false;
    }
    if (analyze) {
      for (const u of ['oak-worker.service', 'oak-netmanager.service']) execFileSync('systemd-analyze', ['verify', join(unitDir, u)], { stdio: 'pipe' });
    } else t.diagnostic('systemd-analyze is not installed here: the units were not verified by systemd');

    writeFileSync(join(data, 'node-id'), 'identity');
    // an upgrade with no flags keeps the settings, the data dir and its identity
    const v2 = fakeArtifact('node-engine', 'worker', '0.2.0', ['NodeEngine', 'NetManager']);
    const r2 = runInstaller(['install', 'worker', ...base, v2, '--json']);
    assert.equal(r2.code, 0, r2.stderr);
    const res = JSON.parse(r2.stdout) as { version: string; previous: string; upgrade: boolean };
    assert.deepEqual([res.version, res.previous, res.upgrade], ['0.2.0', '0.1.0', true]);
    assert.equal(readFileSync(join(data, 'node-id'), 'utf8'), 'identity');
    assert.match(readFileSync(join(unitDir, 'oak-worker.service'), 'utf8'), /-a 10\.1\.2\.3 .*--name w1/);
    assert.equal(readFileSync(join(prefix, 'opt/oak/node-engine/current/NodeEngine.mjs'), 'utf8'), 'console.log("0.2.0")\n');

    // back to 0.1.0: refused, then allowed with --allow-downgrade
    const down = runInstaller(['install', 'worker', ...base, v1]);
    assert.equal(down.code, 2);
    assert.match(down.stderr, /0\.2\.0 is installed; 0\.1\.0 is older[\s\S]*--allow-downgrade/);
    assert.equal(readFileSync(join(prefix, 'opt/oak/node-engine/current/NodeEngine.mjs'), 'utf8'), 'console.log("0.2.0")\n');
    assert.equal(runInstaller(['install', 'worker', ...base, v1, '--allow-downgrade']).code, 0);

    // a hostile value changes nothing
    const before = files(prefix).sort();
    const bad = runInstaller(['install', 'worker', ...base, v2, '--name', 'w1\nExecStartPre=/bin/sh']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--name .* is not valid/);
    assert.deepEqual(files(prefix).sort(), before);
    assert.match(readFileSync(join(unitDir, 'oak-worker.service'), 'utf8'), /--name w1$/m);

    const u1 = runInstaller(['uninstall', 'worker', '--prefix', prefix]);
    assert.equal(u1.code, 0, u1.stderr);
    assert.match(u1.stdout, /left the data dir/);
    assert.deepEqual(files(prefix), [join(data, 'node-id')]);
    // a new install finds the data dir again; uninstall --purge takes everything
    assert.equal(runInstaller(['install', 'worker', ...base, v2, '--cluster', '10.1.2.3', '--token', WORKER_TOKEN]).code, 0);
    const u2 = runInstaller(['uninstall', 'worker', '--prefix', prefix, '--purge']);
    assert.match(u2.stdout, /nothing of it is left/);
    assert.deepEqual(readdirSync(prefix), []);
    assert.equal(runInstaller(['uninstall', 'worker', '--prefix', prefix]).code, 1);
  });

  it('--no-systemd writes no unit and prints the exact command line; required settings are named', () => {
    const prefix = tmp('nosd');
    const art = fakeArtifact('cluster', 'cluster', '0.1.0', ['oak-cluster']);
    const missing = runInstaller(['install', 'cluster', '--prefix', prefix, '--artifact-dir', art, '--no-systemd', '--token', CLUSTER_TOKEN]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--root is required for a cluster/);
    const r = runInstaller(['install', 'cluster', '--prefix', prefix, '--artifact-dir', art, '--no-systemd', '--root', '10.0.0.1', '--token', CLUSTER_TOKEN, '--name', 'c1', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { services: { argv: string[]; commandLine: string }[] };
    assert.equal(out.services.length, 1);
    assert.deepEqual(out.services[0]?.argv.slice(2), ['--root', '10.0.0.1:50052', '--name', 'c1']);
    assert.match(out.services[0]?.commandLine ?? '', /^set -a; \. \S+\/etc\/oak\/cluster\.env; set \+a; env OAK_DATA_DIR=\S+ \S+ \S+oak-cluster\.mjs --root 10\.0\.0\.1:50052 --name c1$/);
    assert.ok(!existsSync(join(prefix, 'etc/systemd')));
    assert.equal(runInstaller(['uninstall', 'cluster', '--prefix', prefix, '--purge']).code, 0);
    assert.deepEqual(readdirSync(prefix), []);
  });

  it('refuses the wrong artifact for a role, unknown flags and roles', () => {
    const prefix = tmp('wrong');
    const art = fakeArtifact('cluster', 'cluster', '0.1.0', ['oak-cluster']);
    assert.match(runInstaller(['install', 'worker', '--prefix', prefix, '--artifact-dir', art]).stderr, /installs cluster, not worker/);
    assert.match(runInstaller(['install', 'worker', '--prefix', prefix, '--artifact-dir', art, '--bogus', 'x']).stderr, /Unknown option '--bogus'/);
    assert.match(runInstaller(['install', 'nodes', '--prefix', prefix]).stderr, /unknown role/);
    assert.deepEqual(readdirSync(prefix), []);
  });
});

describe('oak install / oak uninstall (the CLI, from an artifact file)', () => {
  it('unpacks --artifact, checks it against SHA256SUMS, installs, refuses hostile values (also under names of global options), uninstalls', async () => {
    const art = fakeArtifact('cluster', 'cluster', '0.3.0', ['oak-cluster']);
    const rel = tmp('release');
    const file = join(rel, `oak-cluster-0.3.0-linux-${ARCH}.tar.gz`);
    execFileSync('tar', ['-czf', file, '-C', join(art, '..'), `oak-cluster-0.3.0-linux-${ARCH}`]);
    const sum = execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0] ?? '';
    writeFileSync(join(rel, 'SHA256SUMS'), `${'0'.repeat(64)}  ${file.slice(rel.length + 1)}\n`);
    const prefix = tmp('cli-prefix');
    const args = ['install', 'cluster', '--artifact', file, '--prefix', prefix, '--no-systemd', '--name', 'c1', '--token', CLUSTER_TOKEN];
    const damaged = await runOak([...args, '--root', '10.0.0.1']);
    assert.equal(damaged.code, 1);
    assert.match(damaged.stderr, /does not match its SHA256SUMS/);
    assert.deepEqual(readdirSync(prefix), []);
    writeFileSync(join(rel, 'SHA256SUMS'), `${sum}  ${file.slice(rel.length + 1)}\n`);
    // --root is also a global option of oak: here it is the installer's, and validated as such
    const hostile = await runOak([...args, '--root', '10.0.0.1\nExecStartPre=/bin/sh']);
    assert.equal(hostile.code, 2);
    assert.match(hostile.stderr, /--root .* is not valid/);
    assert.deepEqual(readdirSync(prefix), []);
    const ok = await runOak([...args, '--root', '10.0.0.1']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stderr, /checked .* against SHA256SUMS/);
    assert.match(ok.stdout, /installed oak-cluster 0\.3\.0[\s\S]*--root 10\.0\.0\.1:50052 --name c1/);
    const gone = await runOak(['uninstall', 'cluster', '--prefix', prefix, '--purge']);
    assert.equal(gone.code, 0, gone.stderr);
    assert.deepEqual(readdirSync(prefix), []);
    const none = await runOak(['install', 'cluster', '--artifact', join(rel, 'nope.tar.gz')]);
    assert.equal(none.code, 2);
  });
});
