/**
 * The `oak` binary without a root: help on every command, exit codes of usage errors, the
 * offline validator, the config file, and the one line for a root that cannot be reached.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import { buildProgram } from '../src/program.ts';
import { CliHome, closedPort, example, fixture } from './helpers.ts';

function commandPaths(cmd: Command, prefix: string[] = []): string[][] {
  const out: string[][] = [];
  for (const c of cmd.commands) {
    if (c.name() === 'help') continue;
    const p = [...prefix, c.name()];
    out.push(p);
    out.push(...commandPaths(c, p));
  }
  return out;
}

// the tests are independent of each other: they run at once (helpers.ts keeps a few oak runs under
// way at a time); the config part builds on itself, one test after the other
describe('oak without a root', { concurrency: true }, () => {
  const home = new CliHome();
  after(() => home.cleanup());

  // oak --help timed before the others start, beside a reference point: node itself with tsx, doing nothing
  let top: Awaited<ReturnType<CliHome['run']>>;
  before(async () => {
    const started = Date.now();
    top = await home.run(['--help']);
    const topMs = Date.now() - started;
    const t0 = Date.now();
    const { spawn } = await import('node:child_process');
    await new Promise((resolve) => spawn(process.execPath, ['--import', 'tsx', '-e', '0'], { stdio: 'ignore' }).once('close', resolve));
    const bareMs = Date.now() - t0;
    console.log(`# oak --help: ${topMs} ms; node --import tsx -e 0: ${bareMs} ms`);
  });

  it('--help on every command, with examples, exit 0; and oak --help is quick', async () => {
    const paths = [[], ...commandPaths(buildProgram())];
    assert.ok(paths.length >= 30, `only ${paths.length} commands`);
    assert.equal(top.code, 0);
    for (const group of ['login', 'config', 'app', 'service', 'instance', 'cluster', 'node', 'validate', 'events', 'up', 'doctor']) {
      assert.match(top.stdout, new RegExp(`\\n  ${group}\\b`), `oak --help lists ${group}`);
    }
    // all at once (helpers.ts keeps a few under way at a time)
    await Promise.all(
      paths.map(async (p) => {
        const r = await home.run([...p, '--help']);
        assert.equal(r.code, 0, `oak ${p.join(' ')} --help: ${r.stderr}`);
        assert.match(r.stdout, /^Usage: oak/m, `oak ${p.join(' ')} --help prints usage`);
        assert.match(r.stdout, /Examples?:|Example:/, `oak ${p.join(' ')} --help has examples`);
      }),
    );
  });

  it('usage errors exit 2 with one message and where to look', async () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['app', 'ls', '--bogus'], /unknown option '--bogus'/],
      [['app', 'create'], /create needs the SLA file/],
      [['service', 'scale', 'web'], /scale needs the count/],
      [['service', 'scale', 'up'], /scale up needs the service/],
      [['service', 'scale', 'web', 'three'], /the count must be a whole number >= 0, not "three"/],
      [['-o', 'xml', 'app', 'ls'], /argument 'xml' is invalid/],
      [['app', 'create', '-f', 'does-not-exist.json'], /cannot read does-not-exist.json: no such file/],
      [['app', 'create', '-f', example('web-server.json'), '--timeout', 'soon'], /--timeout "soon" is not a duration/],
      [['config', 'set', 'colour', 'blue'], /unknown setting "colour"/],
      [['config', 'set', 'output', 'xml'], /unknown output format "xml"/],
      [['config', 'set', 'root_url', 'ftp://x'], /must use http or https/],
      [['events', '--types', 'weather'], /unknown event type weather/],
      [['app'], /Usage: oak app/],
    ];
    const [v, ...results] = await Promise.all([home.run(['--version']), ...cases.map(([args]) => home.run(args))]);
    cases.forEach(([args, re], k) => {
      const r = results[k];
      assert.ok(r);
      assert.equal(r.code, 2, `oak ${args.join(' ')} -> ${r.code}: ${r.stderr}`);
      assert.match(r.stderr, re, `oak ${args.join(' ')}`);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    });
    assert.equal(v.code, 0);
    assert.match(v.stdout, /^\d+\.\d+\.\d+/);
  });

  it('validate: the examples are valid', async () => {
    await Promise.all(
      ['web-server.json', 'client-server.json', 'one-shot-job.json', 'constrained-placement.json', 'native-process.json'].map(async (name) => {
        const r = await home.run(['validate', example(name)]);
        assert.equal(r.code, 0, `${name}: ${r.stderr}`);
        assert.match(r.stdout, /valid SLA \(1 application, \d services?\)/);
        assert.equal(r.stderr, '');
      }),
    );
  });

  it('validate: an invalid SLA gives every problem with its path and hint, exit 1', async () => {
    const r = await home.run(['validate', fixture('invalid.json')]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /the SLA has 4 problems:/);
    assert.match(r.stderr, /^ {2}applications\[0\]\.application_name: .*"bad-name".* \(hint: .+\)$/m);
    assert.match(r.stderr, /^ {2}applications\[0\]\.microservices\[0\]\.virtualization: .*kubernetes/m);
    assert.match(r.stderr, /^ {2}applications\[0\]\.microservices\[0\]\.memory: /m);
    assert.match(r.stderr, /^ {2}applications\[0\]\.microservices\[0\]\.port: .*string/m);
    assert.match(r.stderr, /^warning: .*applications\[0\]\.microservices\[0\]\.colour: unknown field/m);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });

  it('validate -o json: the same findings for scripts', async () => {
    const { validateSla } = await import('@oak/contracts');
    const expected = validateSla(JSON.parse(readFileSync(fixture('invalid.json'), 'utf8')));
    assert.equal(expected.ok, false);
    const [r, ok] = await Promise.all([home.run(['validate', fixture('invalid.json'), '-o', 'json']), home.run(['validate', example('web-server.json'), '-o', 'yaml'])]);
    assert.equal(r.code, 1);
    const out = JSON.parse(r.stdout) as { valid: boolean; errors: unknown[]; warnings: unknown[] };
    assert.equal(out.valid, false);
    assert.deepEqual(out.errors, expected.ok ? [] : expected.errors, 'the CLI reports exactly what the shared validator finds');
    assert.deepEqual(out.warnings, expected.warnings);
    assert.equal(ok.code, 0);
    assert.match(ok.stdout, /^valid: true$/m);
  });

  it('validate: bad JSON is exit 1 with the reason, a missing file exit 2; stdin and YAML work', async () => {
    const yamlPath = `${home.dir}/sla.yaml`;
    const { stringify } = await import('yaml');
    writeFileSync(yamlPath, stringify(JSON.parse(readFileSync(example('one-shot-job.json'), 'utf8'))));
    const [bad, missing, piped, y] = await Promise.all([
      home.run(['validate', fixture('broken.json')]),
      home.run(['validate', 'nope.json']),
      home.run(['validate', '-'], { stdin: readFileSync(example('web-server.json'), 'utf8') }),
      home.run(['validate', yamlPath]),
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /broken\.json is not valid JSON/);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^oak: cannot read nope\.json: no such file$/m);
    assert.equal(piped.code, 0, piped.stderr);
    assert.match(piped.stdout, /stdin: valid SLA/);
    assert.equal(y.code, 0, y.stderr);
  });

  it('a root that cannot be reached is one clear line, exit 1', async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}`;
    const all = [['app', 'ls'], ['--root', url, 'service', 'ls'], ['cluster', 'ls'], ['login', '-p', 'x'], ['events']];
    const [j, ...results] = await Promise.all([home.run(['app', 'ls', '-o', 'json'], { env: { OAK_ROOT_URL: url } }), ...all.map((args) => home.run(args, { env: { OAK_ROOT_URL: url } }))]);
    all.forEach((args, k) => {
      const r = results[k];
      assert.ok(r);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
      const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('warning:'));
      assert.deepEqual(lines, [`oak: cannot reach the root at ${url} (connection refused); is it running? try 'oak doctor'`], args.join(' '));
    });
    assert.equal(j.code, 1);
    assert.equal((JSON.parse(j.stderr) as { error: { code: string } }).error.code, 'OAK_UNREACHABLE');
  });

  describe('config', { concurrency: 1 }, () => {
    const cfg = new CliHome();
    after(() => cfg.cleanup());

    it('set, show, unset; the file is 0600 in a 0700 directory; precedence flag > env > file', async () => {
      let r = await cfg.run(['config', 'set', 'root', '10.1.2.3:10000']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /root_url = http:\/\/10\.1\.2\.3:10000/);
      r = await cfg.run(['config', 'set', 'output', 'json']);
      assert.equal(r.code, 0);
      assert.equal(statSync(cfg.configPath).mode & 0o777, 0o600);
      assert.equal(statSync(dirname(cfg.configPath)).mode & 0o777, 0o700);
      const stored = JSON.parse(readFileSync(cfg.configPath, 'utf8')) as Record<string, string>;
      assert.deepEqual(stored, { root_url: 'http://10.1.2.3:10000', output: 'json' });
      // the reads at once (they only read the file)
      const [show, table, yaml] = await Promise.all([
        cfg.run(['config', 'show']),
        cfg.run(['config', 'show', '-o', 'table'], { env: { OAK_ROOT_URL: 'http://127.0.0.9:1234' } }),
        cfg.run(['--root', 'http://127.0.0.8:99', 'config', 'show', '-o', 'yaml'], { env: { OAK_ROOT_URL: 'http://127.0.0.9:1234' } }),
      ]);
      assert.equal(show.code, 0);
      const shown = JSON.parse(show.stdout) as Record<string, unknown>;
      assert.equal(shown.root_url, 'http://10.1.2.3:10000');
      assert.equal(shown.root_url_source, 'config file');
      assert.equal(shown.output, 'json');
      assert.equal(shown.logged_in, false);
      assert.match(table.stdout, /root_url:\s+http:\/\/127\.0\.0\.9:1234 \(OAK_ROOT_URL\)/);
      assert.match(yaml.stdout, /^root_url: http:\/\/127\.0\.0\.8:99$/m);
      assert.match(yaml.stdout, /^root_url_source: --root$/m);
      r = await cfg.run(['config', 'unset', 'root_url']);
      assert.equal(r.code, 0);
      const [after, path] = await Promise.all([cfg.run(['config', 'show']), cfg.run(['config', 'path'])]);
      assert.equal((JSON.parse(after.stdout) as { root_url: string }).root_url, 'http://127.0.0.1:10000');
      assert.equal(path.stdout.trim(), cfg.configPath);
    });

    it('a broken config file is a clear failure, not a crash', async () => {
      const h = new CliHome();
      mkdirSync(dirname(h.configPath), { recursive: true });
      writeFileSync(h.configPath, '{ not json');
      const r = await h.run(['app', 'ls']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /config file .* is not valid JSON/);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
      h.cleanup();
    });
  });

  describe('up and doctor', () => {
    it('up passes its arguments to oakd and its exit code back; a missing oakd is one clear error', async () => {
      const fake = `${home.dir}/fake-oakd.mjs`;
      writeFileSync(fake, 'console.log(JSON.stringify(process.argv.slice(2))); process.exit(3);\n');
      const [r, dashed, missing] = await Promise.all([
        home.run(['up', '--port', '1234', '--data-dir', '/tmp/x', '--no-worker'], { env: { OAK_OAKD_BIN: fake } }),
        home.run(['up', '--', '--help'], { env: { OAK_OAKD_BIN: fake } }),
        home.run(['up'], { env: { OAK_OAKD_BIN: `${home.dir}/nowhere.mjs` } }),
      ]);
      assert.equal(r.code, 3, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), ['--port', '1234', '--data-dir', '/tmp/x', '--no-worker']);
      assert.deepEqual(JSON.parse(dashed.stdout), ['--help']);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /^oak: the 1-DOC \(oakd\) is not part of this installation yet/);
    });

    it('doctor checks the default ports of the contracts', async () => {
      const { DEFAULT_PORTS } = await import('@oak/contracts');
      const { PORTS } = await import('../src/commands/doctor.ts');
      assert.deepEqual(PORTS.map((p) => p.port).sort(), [DEFAULT_PORTS.root, DEFAULT_PORTS.cluster, DEFAULT_PORTS.clusterMqtt, DEFAULT_PORTS.rootLink].sort());
    });

    let port: number;
    before(async () => {
      port = await closedPort();
    });

    it('doctor prints one line per check with a fix, and exits 1 when the root is not there', async () => {
      const [r, j] = await Promise.all([
        home.run(['doctor'], { env: { OAK_ROOT_URL: `http://127.0.0.1:${port}` } }),
        home.run(['doctor', '--client', '-o', 'json'], { env: { OAK_ROOT_URL: `http://127.0.0.1:${port}` } }),
      ]);
      assert.equal(r.code, 1, r.stderr);
      for (const check of ['node', 'containerd', 'runc', 'cgroups', 'port 10000', 'port 10100', 'port 10003', 'port 50052', 'MQTT broker', 'root']) {
        assert.match(r.stdout, new RegExp(`^[✓⚠✗] ${check}\\b`, 'm'), `a line for ${check}`);
      }
      assert.match(r.stdout, /^✗ root\s+cannot reach http:\/\/127\.0\.0\.1:\d+ \(connection refused\)\n\s+fix: start it/m);
      assert.equal(j.code, 1);
      const out = JSON.parse(j.stdout) as { ok: boolean; checks: { check: string; status: string; fix?: string }[] };
      assert.equal(out.ok, false);
      assert.deepEqual(out.checks.map((c) => c.check), ['node', 'root']);
      assert.equal(out.checks[1]?.status, 'fail');
    });
  });
});
