/**
 * What every qemu-based driver (unikernel, microvm) shares: the host probe (qemu-system-x86_64
 * and whether KVM works with `-M microvm`, else software emulation), the argv, the exit verdict of
 * `isa-debug-exit`, and a tap device in the instance's network namespace bridged to its veth.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { constants, existsSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { interpretExit } from '../supervisor/verdict.ts';
import type { ExitVerdict, RawExit } from '../supervisor/verdict.ts';
import { resolveCode } from '../process/code.ts';
import type { ProbeResult } from '../types.ts';

const SETPRIV = '/usr/bin/setpriv';

/**
 * A probe VM (KVM checks) that dies with its prober: under `setpriv --pdeathsig KILL` where setpriv
 * is installed, so a NodeEngine killed mid-probe leaves no qemu behind (one did once).
 */
export function spawnProbeVm(binary: string, args: string[]): ChildProcessWithoutNullStreams {
  return existsSync(SETPRIV) ? spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', binary, ...args], { stdio: 'pipe' }) : spawn(binary, args, { stdio: 'pipe' });
}

export const QEMU = 'qemu-system-x86_64';
/** the port the guest writes its exit value v to; qemu then exits with (v << 1) | 1 */
export const DEBUG_EXIT_PORT = 0xf4;

export interface QemuHost {
  binary: string;
  kvm: boolean;
  /** why KVM is not used, when it is not */
  kvmProblem?: string | undefined;
}

let probed: Promise<QemuHost | string> | undefined;

/** Finds qemu and tries KVM once (cached): a string says why qemu is unusable. */
export function probeQemu(): Promise<QemuHost | string> {
  probed ??= doProbe();
  return probed;
}

/** test seam */
export function resetQemuProbe(): void {
  probed = undefined;
}

async function doProbe(): Promise<QemuHost | string> {
  let binary: string;
  try {
    binary = await resolveCode(QEMU, '/nonexistent');
  } catch {
    return `${QEMU} is not installed (apt-get install qemu-system-x86)`;
  }
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { binary, kvm: false, kvmProblem: '/dev/kvm is not usable' };
  }
  // KVM set-up errors make qemu exit before its monitor prompt: a paused (-S) machine that shows
  // the prompt has KVM working (a deadline, not a guess: no prompt in 10 s reads as no KVM)
  const problem = await new Promise<string | undefined>((resolve) => {
    const args = ['-M', 'microvm', '-accel', 'kvm', '-display', 'none', '-nodefaults', '-no-user-config', '-monitor', 'stdio', '-serial', 'none', '-S', '-m', '8'];
    // the paused probe VM dies with its prober (a NodeEngine killed mid-probe left it running)
    const c = spawnProbeVm(binary, args);
    let out = '';
    let err = '';
    let done = false;
    const finish = (v: string | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(t);
      c.kill('SIGKILL');
      resolve(v);
    };
    const t = setTimeout(() => finish('no monitor prompt within 10 s'), 10_000);
    c.stdout.on('data', (d: Buffer) => {
      out = (out + d.toString()).slice(-4000);
      if (out.includes('(qemu)')) finish(undefined);
    });
    c.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(0, 4000)));
    c.stdin.on('error', () => undefined);
    c.on('error', (e) => finish(e.message));
    c.on('exit', (code) => finish(err.trim().split('\n')[0] || `qemu exited with ${code ?? 'a signal'}`));
  });
  return problem === undefined ? { binary, kvm: true } : { binary, kvm: false, kvmProblem: problem };
}

export async function qemuProbeResult(what: string): Promise<ProbeResult> {
  const h = await probeQemu();
  if (typeof h === 'string') return { available: false, detail: h };
  return { available: true, detail: `${what} in ${h.binary} -M microvm, ${h.kvm ? 'KVM' : `software emulation (TCG; ${h.kvmProblem ?? 'no KVM'})`}` };
}

export interface QemuVm {
  kernel: string;
  initrd?: string | undefined;
  append: string;
  memoryMb: number;
  vcpus: number;
  /** a directory shared with the guest over 9p (mount tag `fs0`) */
  share?: string | undefined;
  /**
   * vhost-user-fs (virtiofs) devices, tags `vol<i>`, each on the socket of its virtiofsd: the guest
   * RAM becomes a shared memfd and virtio-mmio runs in its modern mode (vhost-user has no legacy one)
   */
  virtiofs?: string[] | undefined;
  /** a tap device name (in the namespace qemu runs in) for a virtio-net NIC */
  tap?: string | undefined;
  mac?: string | undefined;
}

/** argv of one VM whose serial console is qemu's stdout and which ends via isa-debug-exit */
export function qemuArgv(host: QemuHost, vm: QemuVm): string[] {
  const fs = vm.virtiofs ?? [];
  const a = [host.binary, '-M', fs.length > 0 ? 'microvm,memory-backend=mem' : 'microvm', '-accel', host.kvm ? 'kvm' : 'tcg', '-m', String(vm.memoryMb), '-smp', String(vm.vcpus),
    '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none', '-serial', 'stdio', '-no-reboot',
    '-device', `isa-debug-exit,iobase=0x${DEBUG_EXIT_PORT.toString(16)},iosize=0x04`, '-kernel', vm.kernel];
  if (vm.initrd !== undefined) a.push('-initrd', vm.initrd);
  if (vm.append !== '') a.push('-append', vm.append);
  if (vm.share !== undefined) {
    if (vm.share.includes(',')) throw new Error(`share path ${vm.share} contains a comma`);
    a.push('-fsdev', `local,id=fs0,path=${vm.share},security_model=none,readonly=on`, '-device', 'virtio-9p-device,fsdev=fs0,mount_tag=fs0');
  }
  if (fs.length > 0) a.push('-object', `memory-backend-memfd,id=mem,size=${vm.memoryMb}M,share=on`, '-global', 'virtio-mmio.force-legacy=false');
  fs.forEach((sock, i) => {
    if (sock.includes(',')) throw new Error(`socket path ${sock} contains a comma`);
    a.push('-chardev', `socket,id=vfs${i},path=${sock}`, '-device', `vhost-user-fs-device,chardev=vfs${i},tag=vol${i}`);
  });
  if (vm.tap !== undefined) a.push('-netdev', `tap,id=n0,ifname=${vm.tap},script=no,downscript=no`, '-device', `virtio-net-device,netdev=n0${vm.mac !== undefined ? `,mac=${vm.mac}` : ''}`);
  else a.push('-net', 'none');
  return a;
}

/**
 * qemu's exit to the instance's end: an odd code 2v+1 is the guest's isa-debug-exit value v
 * (v = 0: success); 0 is a guest that powered off or reset (with -no-reboot). Signals (the
 * wrapper's 128+N for KILL/TERM) and OOM kills read as for any process.
 */
export function qemuVerdict(raw: RawExit): ExitVerdict {
  const c = raw.code;
  if (c === undefined || raw.oomKills > 0 || c === 137 || c === 143 || c === 130 || c === 129) return interpretExit(raw);
  if (c === 0) return interpretExit({ ...raw, code: 0 });
  if (c % 2 === 1) {
    const v = (c - 1) / 2;
    const r = interpretExit({ ...raw, code: v });
    return v === 0 ? r : { ...r, detail: `the guest exited with code ${v}`, signal: undefined };
  }
  return { exit_code: c, state: 'FAILED', detail: `qemu exited with code ${c}` };
}
