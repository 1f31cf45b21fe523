/**
 * Finds a containerd to use, or starts one that oakd manages. A managed containerd is started
 * detached, so that it (and the containers it runs) outlives an oakd crash; the next oakd start
 * finds its socket and reuses it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, openSync, writeFileSync } from 'node:fs';
import { unixSocketAnswers as socketAnswers } from '@oak/sysinfo';
import { join } from 'node:path';

export interface ContainerdChoice {
  socket: string | null;
  /** what a user should read: which containerd, or why none */
  detail: string;
  managed: boolean;
}

export const SYSTEM_SOCKET = '/run/containerd/containerd.sock';

function onPath(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;
}

export async function ensureContainerd(dataDir: string, wanted?: string): Promise<ContainerdChoice> {
  if (wanted) {
    return (await socketAnswers(wanted))
      ? { socket: wanted, detail: `containerd at ${wanted}`, managed: false }
      : { socket: null, detail: `no containerd answers at ${wanted}`, managed: false };
  }
  if (await socketAnswers(SYSTEM_SOCKET)) return { socket: SYSTEM_SOCKET, detail: `system containerd at ${SYSTEM_SOCKET}`, managed: false };
  const runDir = '/run/oak/containerd';
  const socket = join(runDir, 'containerd.sock');
  if (await socketAnswers(socket)) return { socket, detail: `oak-managed containerd at ${socket}`, managed: true };
  if (!onPath('containerd') || !onPath('runc')) {
    return { socket: null, detail: 'containerd and runc are not installed (as root on Debian/Ubuntu: apt-get install containerd runc)', managed: false };
  }
  if (process.getuid?.() !== 0) {
    return { socket: null, detail: 'containerd is installed but not running, and starting it needs root', managed: false };
  }
  const dir = join(dataDir, 'containerd');
  mkdirSync(join(dir, 'root'), { recursive: true });
  mkdirSync(runDir, { recursive: true });
  const config = join(dir, 'config.toml');
  writeFileSync(
    config,
    `version = 2\nroot = "${join(dir, 'root')}"\nstate = "${join(runDir, 'state')}"\n[grpc]\n  address = "${socket}"\n`,
  );
  const log = openSync(join(dir, 'containerd.log'), 'a');
  const child = spawn('containerd', ['--config', config], { detached: true, stdio: ['ignore', log, log] });
  child.unref();
  const until = Date.now() + 15_000;
  while (Date.now() < until) {
    if (await socketAnswers(socket)) return { socket, detail: `oak-managed containerd at ${socket} (started now, log ${join(dir, 'containerd.log')})`, managed: true };
    await new Promise((r) => setTimeout(r, 100));
  }
  return { socket: null, detail: `containerd did not come up; see ${join(dir, 'containerd.log')}`, managed: false };
}
