/**
 * /metrics at low idle cost (issue 13): the request counter and histogram kept without
 * prom-client (its exposition format), and the shipped root bundle loads prom-client only on
 * demand (a dynamic import, no static one), so an idle root neither holds it nor runs its 10 ms
 * event-loop lag timer. The first scrape after the start is in server.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { EVENT_LOOP_PRECISION_MS, HttpMetrics } from '../src/plugins/metrics.ts';

test('the histogram is cumulative, +Inf holds what is above the last bucket, labels are escaped', () => {
  const m = new HttpMetrics();
  m.observe('GET', '/a', '200', 0.003);
  m.observe('GET', '/a', '200', 0.02);
  m.observe('GET', '/a', '404', 10);
  m.observe('GET', '/q"\\\n', '200', 0.0005);
  const t = m.text();
  assert.match(t, /^oak_http_requests_total\{method="GET",route="\/a",status="200"\} 2$/m);
  assert.match(t, /^oak_http_requests_total\{method="GET",route="\/a",status="404"\} 1$/m);
  assert.match(t, /^oak_http_request_duration_seconds_bucket\{le="0.001",method="GET",route="\/a"\} 0$/m);
  assert.match(t, /^oak_http_request_duration_seconds_bucket\{le="0.005",method="GET",route="\/a"\} 1$/m);
  assert.match(t, /^oak_http_request_duration_seconds_bucket\{le="0.025",method="GET",route="\/a"\} 2$/m);
  assert.match(t, /^oak_http_request_duration_seconds_bucket\{le="5",method="GET",route="\/a"\} 2$/m);
  assert.match(t, /^oak_http_request_duration_seconds_bucket\{le="\+Inf",method="GET",route="\/a"\} 3$/m);
  assert.match(t, /^oak_http_request_duration_seconds_count\{method="GET",route="\/a"\} 3$/m);
  assert.match(t, /^oak_http_request_duration_seconds_sum\{method="GET",route="\/a"\} 10.023$/m);
  assert.ok(t.includes('route="/q\\"\\\\\\n"'), 'quote, backslash and newline escaped');
  assert.ok(EVENT_LOOP_PRECISION_MS >= 100);
});

test('the root bundle imports prom-client only dynamically', async () => {
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const out = await build({
    absWorkingDir: root, entryPoints: ['apps/root/src/main.ts'], bundle: true, platform: 'node', format: 'esm', target: 'node20', write: false, logLevel: 'silent',
    plugins: [{ name: 'ext', setup: (b) => b.onResolve({ filter: /^[^./]/ }, (a) => (a.kind === 'entry-point' || a.path.startsWith('@oak/') ? undefined : { path: a.path, external: true })) }],
  });
  const code = out.outputFiles[0]?.text ?? '';
  assert.ok(/import\("prom-client"\)/.test(code), 'a dynamic import of prom-client');
  assert.ok(!/^\s*(import|\}) .*from "prom-client"/m.test(code), 'no static import of prom-client');
});
