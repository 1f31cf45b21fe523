/** `oak events` keeps following across a restart of the root. */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_PASSWORD, CliHome, example, startTestRoot, type TestRoot } from './helpers.ts';

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('oak events across a root restart', () => {
  const home = new CliHome();
  const dataDir = mkdtempSync(join(tmpdir(), 'oak-cli-events-'));
  const roots: TestRoot[] = [];
  after(async () => {
    for (const r of roots) await r.close().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
    home.cleanup();
  });

  it('says the stream was lost, reconnects, and goes on printing', async () => {
    const first = await startTestRoot({ dataDir });
    roots.push(first);
    const env = { OAK_ROOT_URL: first.url };
    const login = await home.run(['login', '--password-stdin'], { stdin: ADMIN_PASSWORD, env });
    assert.equal(login.code, 0, login.stderr);
    // the root's own listeners (the readings book) subscribe too: wait for one more than those
    const own = first.root.ctx.events.size;
    const ev = home.start(['events', '-o', 'json', '--types', 'application'], { env });
    await until(() => first.root.ctx.events.size > own, 'oak events to subscribe');
    await first.close();
    await until(() => /reconnecting/.test(ev.stderr()), 'the reconnect notice');
    const second = await startTestRoot({ dataDir, port: first.root.port });
    roots.push(second);
    // a root of the same build starts with as many listeners of its own as the first
    await until(() => second.root.ctx.events.size > own, 'oak events to subscribe again', 30_000);
    const r = await home.run(['app', 'create', '-f', example('web-server.json'), '--no-deploy'], { env });
    assert.equal(r.code, 0, r.stderr);
    await ev.waitFor('"created"');
    ev.kill('SIGINT');
    const done = await ev.done;
    assert.equal(done.code, 0);
    assert.match(done.stderr, /^oak: (the root closed the event stream|lost the event stream).*; reconnecting$/m);
    assert.match(done.stderr, /^oak: event stream back$/m);
  });
});
