// A reporter for node's test runner (run-tests.mjs adds it next to spec): the time of each test
// file (the sum of its top-level tests), slowest first, so that the suite's budget can be read.
export default async function* testTimes(source) {
  const byFile = new Map();
  for await (const ev of source) {
    if ((ev.type === 'test:pass' || ev.type === 'test:fail') && ev.data.nesting === 0 && ev.data.file) {
      byFile.set(ev.data.file, (byFile.get(ev.data.file) ?? 0) + (ev.data.details?.duration_ms ?? 0));
    }
  }
  const root = process.cwd() + '/';
  const rows = [...byFile].sort((a, b) => b[1] - a[1]);
  const total = rows.reduce((n, [, ms]) => n + ms, 0);
  yield `test files by time (sum of top-level tests), ${rows.length} files, ${(total / 1000).toFixed(0)} s in all:\n`;
  for (const [file, ms] of rows) yield `${(ms / 1000).toFixed(1).padStart(8)} s  ${file.startsWith(root) ? file.slice(root.length) : file}\n`;
}
