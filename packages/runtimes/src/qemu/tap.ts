/**
 * A VM's network in the instance's namespace (the NodeEngine made it: `eth0` with the instance's
 * address and a default route, see apps/node-engine/src/network.ts). The guest takes the
 * instance's address over: inside the namespace a bridge `oakbr0` joins `eth0` and a tap `oaktap0`
 * (qemu's NIC), and eth0's address moves to the guest, which is told it on its kernel command
 * line. release() puts the address back on eth0, so the namespace is as the NodeEngine left it.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const pexec = promisify(execFile);
export const TAP = 'oaktap0';
export const BRIDGE = 'oakbr0';

export interface GuestNet {
  tap: string;
  ip: string;
  prefix: number;
  gateway: string | undefined;
  mask: string;
}

async function ipIn(nsenter: string, ip: string, netns: string, args: string[]): Promise<string> {
  const r = await pexec(nsenter, [`--net=${netns}`, '--', ip, ...args], { timeout: 10000 });
  return r.stdout;
}

export function prefixMask(prefix: number): string {
  const m = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return [24, 16, 8, 0].map((s) => (m >>> s) & 255).join('.');
}

/** Makes the tap and bridge; idempotent (a re-run after a crash finds them made). */
export async function setupGuestNet(nsenter: string, ip: string, netns: string, statePath: (n: GuestNet) => Promise<void>): Promise<GuestNet> {
  const addrs = JSON.parse(await ipIn(nsenter, ip, netns, ['-j', '-4', 'addr', 'show'])) as Array<{ ifname: string; addr_info: Array<{ local: string; prefixlen: number }> }>;
  const routes = JSON.parse(await ipIn(nsenter, ip, netns, ['-j', '-4', 'route', 'show', 'default'])) as Array<{ gateway?: string }>;
  const on = addrs.find((a) => a.ifname === BRIDGE && a.addr_info.length > 0) ?? addrs.find((a) => a.ifname === 'eth0' && a.addr_info.length > 0);
  const a = on?.addr_info[0];
  if (a === undefined) throw new Error(`the namespace ${netns} has no IPv4 address on eth0`);
  const net: GuestNet = { tap: TAP, ip: a.local, prefix: a.prefixlen, gateway: routes[0]?.gateway, mask: prefixMask(a.prefixlen) };
  await statePath(net);
  const batch = [`tuntap add dev ${TAP} mode tap`, `link add ${BRIDGE} type bridge`, `addr flush dev eth0`, `link set eth0 master ${BRIDGE}`, `link set ${TAP} master ${BRIDGE}`, `link set ${TAP} up`, `link set ${BRIDGE} up`];
  for (const cmd of batch) {
    try {
      await ipIn(nsenter, ip, netns, cmd.split(' '));
    } catch (e) {
      if (!/File exists|exists/.test((e as { stderr?: string }).stderr ?? '')) throw new Error(`ip ${cmd} in ${netns}: ${((e as { stderr?: string }).stderr ?? (e as Error).message).trim()}`);
    }
  }
  return net;
}

/** Removes the tap and bridge and gives eth0 its address and default route back; idempotent. */
export async function releaseGuestNet(nsenter: string, ip: string, netns: string, net: GuestNet | undefined): Promise<void> {
  const quiet = (args: string[]): Promise<unknown> => ipIn(nsenter, ip, netns, args).catch(() => undefined);
  await quiet(['link', 'del', TAP]);
  await quiet(['link', 'del', BRIDGE]);
  if (net !== undefined) {
    await quiet(['addr', 'add', `${net.ip}/${net.prefix}`, 'dev', 'eth0']);
    await quiet(['link', 'set', 'eth0', 'up']);
    if (net.gateway !== undefined) await quiet(['route', 'add', 'default', 'via', net.gateway]);
  }
}

/** a stable locally administered MAC per instance id */
export function guestMac(id: string): string {
  return `52:54:00:${createHash('sha256').update(id).digest('hex').slice(0, 6).replace(/(..)(?=.)/g, '$1:')}`;
}

function netFile(netDir: string, id: string): string {
  return join(netDir, `${createHash('sha256').update(id).digest('hex').slice(0, 32)}.json`);
}

/**
 * setupGuestNet for one instance, remembering what it changed in `<netDir>/<hash of id>.json`
 * (written before the namespace is touched) so that releaseInstanceNet can undo it, also after a
 * NodeEngine restart.
 */
export function setupInstanceNet(nsenter: string, ip: string, netns: string, netDir: string, id: string): Promise<GuestNet> {
  return setupGuestNet(nsenter, ip, netns, async (n) => {
    await mkdir(netDir, { recursive: true, mode: 0o700 });
    await writeFile(netFile(netDir, id), JSON.stringify({ netns, net: n }));
  });
}

/** Undoes setupInstanceNet of `id` (nothing when it made nothing); idempotent. */
export async function releaseInstanceNet(netDir: string, id: string): Promise<void> {
  const f = netFile(netDir, id);
  let saved: { netns: string; net: GuestNet } | undefined;
  try {
    saved = JSON.parse(await readFile(f, 'utf8')) as { netns: string; net: GuestNet };
  } catch {
    return;
  }
  await releaseGuestNet('nsenter', 'ip', saved.netns, saved.net);
  await rm(f, { force: true });
}
