/**
 * The 1-DOC's built-in NetManager (issue 8): started in-process before the built-in NodeEngine,
 * which then registers with it on its port (`NodeEngine -n <port>`). On by default
 * (`--netmanager on|off`, env OAK_NETMANAGER); `off` keeps the 1-DOC as it was (no overlay).
 *
 * NodePublicAddress (the tunnel endpoint other workers send VXLAN to): `--public-address` (env
 * OAK_PUBLIC_ADDRESS); by default the address oakd listens on when that is a specific one, else
 * the first non-internal IPv4 address of the machine (what a worker on the same network reaches,
 * the one the printed add-a-worker command names), else 127.0.0.1 (a device alone).
 *
 * The NetManager app (`@oak/netmanager`, `startNetManager(opts)` returning `{ port, keyPath,
 * close(), clean() }`) is bundled into oakd and initialised only when it is on.
 */
import { networkInterfaces } from 'node:os';

export interface BuiltInNetManager {
  readonly port: number;
  readonly keyPath?: string;
  close(): Promise<void>;
  clean(): Promise<void>;
}

/** what oakd passes to startNetManager (a subset of the NetManager's options) */
export interface BuiltInNetManagerOptions {
  port: number;
  keyDir?: string;
  dataDir: string;
  publicAddress: string;
  publicPort: number;
  fallbackMqttUrl?: string;
  /** the cluster's embedded broker inside this process (see NetManagerOptions.mqttStream) */
  mqttStream?: () => import('node:stream').Duplex;
}

type StartNetManager = (opts: BuiltInNetManagerOptions) => Promise<BuiltInNetManager>;

/** The address other workers reach this device at (see the header). */
export function defaultPublicAddress(host: string, interfaces: ReturnType<typeof networkInterfaces> = networkInterfaces()): string {
  if (host !== '0.0.0.0' && host !== '::' && host !== '') return host;
  for (const list of Object.values(interfaces)) {
    for (const a of list ?? []) {
      if (a.family === 'IPv4' && !a.internal) return a.address;
    }
  }
  return '127.0.0.1';
}

export async function startBuiltInNetManager(opts: BuiltInNetManagerOptions, load: () => Promise<unknown> = () => import('@oak/netmanager')): Promise<BuiltInNetManager> {
  let mod: { startNetManager?: unknown };
  try {
    mod = (await load()) as { startNetManager?: unknown };
  } catch (err) {
    throw new Error(`the NetManager is not part of this build (${err instanceof Error ? err.message : String(err)}); start oakd with --netmanager off`);
  }
  if (typeof mod.startNetManager !== 'function') throw new Error('the NetManager module has no startNetManager(); start oakd with --netmanager off');
  return (mod.startNetManager as StartNetManager)(opts);
}
