/**
 * The runner of a wasm instance: a small ES module run by Node (`node runner.mjs ...`) under the
 * supervisor's wrapper, so the instance is an ordinary supervised child (cgroup, state file,
 * re-adoption, logs). It runs one WASI preview 1 module with node:wasi: `args` = the SLA's cmd,
 * `env` = the SLA's env (nothing of the runner's own), one preopen (the instance's scratch
 * directory, as `/`), stdio = the instance log. node:wasi alone is not a security boundary (its
 * documentation says so): the runner runs as the unprivileged workload user inside the
 * instance's cgroup, and the module reaches the file system only through its preopen.
 *
 * argv: runner.mjs <module.wasm> <scratch dir> <env.json> <end file> <cap pages> [args...]
 * A trap or running out of memory writes one JSON line to <end file> (outside the preopen, so the
 * module cannot forge it) for the driver's exit verdict: {"kind":"oom"|"trap","detail":...}.
 * Exit codes: the module's own (proc_exit, 0 when _start returns), 137 out of memory, 134 trap,
 * 2 the module cannot be instantiated.
 */
export const RUNNER_SOURCE = `import { readFileSync, writeFileSync } from 'node:fs';
import { WASI } from 'node:wasi';
const [modPath, scratch, envFile, endFile, capArg, ...args] = process.argv.slice(2);
const cap = Number(capArg);
const env = {};
for (const kv of JSON.parse(readFileSync(envFile, 'utf8'))) {
  const i = kv.indexOf('=');
  if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
}
const end = (kind, detail, code) => {
  try { writeFileSync(endFile, JSON.stringify({ kind, detail }) + '\\n'); } catch {}
  process.stderr.write('oak-wasm: ' + detail + '\\n', () => process.exit(code));
};
const wasi = new WASI({ version: 'preview1', args: ['module.wasm', ...args], env, preopens: { '/': scratch }, returnOnExit: true });
let instance;
try {
  const mod = await WebAssembly.compile(readFileSync(modPath));
  instance = await WebAssembly.instantiate(mod, wasi.getImportObject());
} catch (e) {
  end('instantiate', 'cannot instantiate the module: ' + e.message, 2);
}
if (instance !== undefined) {
  let code;
  try {
    code = wasi.start(instance);
  } catch (e) {
    const mem = instance.exports.memory;
    const pages = mem instanceof WebAssembly.Memory ? mem.buffer.byteLength / 65536 : 0;
    const mb = (p) => (p / 16).toFixed(p % 16 === 0 ? 0 : 1);
    if (e instanceof RangeError && /memory|allocat/i.test(e.message)) end('oom', 'out of memory: ' + e.message, 137);
    else if (cap > 0 && pages + Math.max(1, cap / 16) > cap) end('oom', 'out of memory: the module used ' + mb(pages) + ' MB of its ' + mb(cap) + ' MB and trapped (' + e.message + ')', 137);
    else end('trap', 'the module trapped: ' + e.message, 134);
  }
  if (code !== undefined) process.exitCode = code;
}
`;
