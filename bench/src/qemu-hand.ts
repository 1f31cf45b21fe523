/**
 * The raw baselines of the runtime benches: the argv of a qemu driver's own qemu read from /proc
 * (runtime-microvm, runtime-unikernel), and a command started by hand until a line on its stdout
 * (those, and runtime-wasm's direct node:wasi run).
 */
import { spawn } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';

/** the argv of the running qemu that has an argument for which `mine` is true */
export async function qemuArgvOf(mine: (arg: string) => boolean, what: string): Promise<string[]> {
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').filter((a) => a !== '');
    if ((argv[0] ?? '').endsWith('qemu-system-x86_64') && argv.some(mine)) return argv;
  }
  throw new Error(`no qemu runs ${what}`);
}

/** ms from starting `argv` until `line` is on its stdout (a VM's serial console); the child is killed then */
export function handOnce(argv: string[], line: string, timeoutMs = 180_000, env?: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const c = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'], ...(env !== undefined ? { env } : {}) });
    let out = '';
    const t = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`${argv[0] ?? '?'} by hand: no line within ${timeoutMs} ms`));
    }, timeoutMs);
    c.stdout.on('data', (d: Buffer) => {
      out = (out + d.toString()).slice(-4096);
      if (out.includes(line)) {
        clearTimeout(t);
        const ms = performance.now() - t0;
        c.once('exit', () => resolve(ms));
        c.kill('SIGKILL');
      }
    });
    c.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}
