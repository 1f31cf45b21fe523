/**
 * 1-DOC: the root, a cluster and a worker in one process. Each part is the same code that runs
 * alone (oak-root, oak-cluster, NodeEngine); here they are wired together over loopback (the
 * root <-> cluster link in memory: connectInProcess), with the embedded MQTT broker and SQLite, so
 * one command gives a working system.
 */
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { consoleLogger } from '@oak/bus';
import { startCluster, type ClusterHandle } from '@oak/cluster';
import { startNodeEngine, type NodeEngineHandle } from '@oak/node-engine';
import { startRoot, type RootHandle } from '@oak/root';
import { startRootLink, type RootLink } from '@oak/root/link';
import { ensureContainerd, type ContainerdChoice } from './containerd.ts';
import type { OakdConfig } from './config.ts';
import { ownTokens, type OwnTokens } from './tokens.ts';
import { defaultPublicAddress, startBuiltInNetManager, type BuiltInNetManager } from './netmanager.ts';

export interface Oakd {
  root: RootHandle;
  link: RootLink;
  cluster: ClusterHandle;
  worker: NodeEngineHandle | null;
  containerd: ContainerdChoice;
  /** the join tokens this 1-DOC made for itself (kept in <data dir>/join-tokens.json, 0600) */
  tokens: OwnTokens;
  /** the built-in NetManager (null: --netmanager off, no worker here, or it could not start) */
  netmanager: BuiltInNetManager | null;
  /** NodePublicAddress of this device (the tunnel endpoint; also the address in the add-a-worker command) */
  publicAddress: string;
  close(): Promise<void>;
}

export type Say = (line: string) => void;

export async function startOakd(cfg: OakdConfig, say: Say = (l) => process.stdout.write(`${l}\n`)): Promise<Oakd> {
  mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
  // database, keys, node id: root's alone, also when the dir existed before
  if (statSync(cfg.dataDir).uid === process.getuid?.()) chmodSync(cfg.dataDir, 0o700);
  const loopback = cfg.host === '0.0.0.0' || cfg.host === '::' ? '127.0.0.1' : cfg.host;
  const closers: (() => Promise<void>)[] = [];
  const closeAll = async (): Promise<void> => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  };
  try {
    let link: RootLink | undefined;
    const root = await startRoot({
      host: cfg.host,
      port: cfg.port,
      dataDir: cfg.dataDir,
      logLevel: cfg.logLevel,
      ...(cfg.databaseUrl ? { databaseUrl: cfg.databaseUrl } : {}),
      ...(cfg.adminPassword ? { adminPassword: cfg.adminPassword } : {}),
      ...(cfg.extraServiceRanges !== undefined ? { extraServiceRanges: cfg.extraServiceRanges } : {}),
      control: async (ctx) => {
        link = await startRootLink(ctx, { host: cfg.host, port: cfg.linkPort });
        return link.control;
      },
    });
    closers.push(() => root.close());
    if (!link) throw new Error('the cluster link did not start');
    const rootLink: RootLink = link;
    const tokens = await ownTokens(root.ctx, cfg.dataDir, cfg.clusterName);

    const cluster = await startCluster({
      name: cfg.clusterName,
      location: cfg.clusterLocation ?? null,
      host: cfg.host,
      port: cfg.clusterPort,
      mqttPort: cfg.mqttPort,
      ...(cfg.mqttUrl ? { mqttUrl: cfg.mqttUrl } : {}),
      ...(cfg.reportIntervalMs ? { reportIntervalMs: cfg.reportIntervalMs } : {}),
      // the cluster joins its root in this process without the network (the same hello and
      // token as over gRPC); the link port stays open for the clusters of other machines
      root: { address: `${loopback}:${rootLink.port}`, token: tokens.cluster, connect: (receiver) => rootLink.link.connectInProcess(receiver) },
      log: consoleLogger(`cluster ${cfg.clusterName}`, cfg.logLevel),
    });
    closers.push(() => cluster.close());

    let containerd: ContainerdChoice = { socket: null, detail: 'no worker in this process', managed: false };
    let worker: NodeEngineHandle | null = null;
    let netmanager: BuiltInNetManager | null = null;
    const publicAddress = cfg.publicAddress ?? defaultPublicAddress(cfg.host);
    if (!cfg.noWorker && cfg.netmanager) {
      try {
        netmanager = await startBuiltInNetManager({
          port: cfg.netmanagerPort,
          dataDir: join(cfg.dataDir, 'netmanager'),
          publicAddress,
          publicPort: cfg.publicPort,
          fallbackMqttUrl: cluster.mqttUrl,
          // the cluster's embedded broker is in this process: no TLS round trip per message
          ...(cfg.mqttUrl === undefined && cluster.localBrokerStream !== undefined ? { mqttStream: cluster.localBrokerStream } : {}),
        });
        const nm = netmanager;
        closers.push(() => nm.close());
        say(`overlay: NetManager on 127.0.0.1:${nm.port}, tunnel endpoint ${publicAddress}:${cfg.publicPort}`);
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        if (cfg.netmanagerExplicit) throw new Error(`the built-in NetManager could not start (--netmanager on): ${why}`);
        say(`overlay: off (the NetManager could not start: ${why}); pass --netmanager off to say so`);
      }
    }
    if (!cfg.noWorker) {
      containerd = await ensureContainerd(cfg.dataDir, cfg.containerd);
      say(containerd.socket ? `containers: ${containerd.detail}` : `containers: unavailable (${containerd.detail}); running native processes only`);
      worker = await startNodeEngine({
        clusterAddress: loopback,
        clusterPort: cluster.port,
        joinToken: tokens.worker,
        ...(netmanager !== null
          ? { netmanagerPort: netmanager.port, useNetManager: true, ...(netmanager.keyPath !== undefined ? { netmanagerKeyDir: dirname(netmanager.keyPath) } : {}) }
          : { netmanagerPort: null }),
        dataDir: cfg.dataDir,
        namespace: cfg.namespace,
        containerdSocket: containerd.socket ?? '/nonexistent/containerd.sock',
        ...(cfg.workerName ? { name: cfg.workerName } : {}),
        ...(cfg.clusterLocation ? { location: cfg.clusterLocation } : {}),
        ...(cfg.reportIntervalMs ? { reportIntervalMs: cfg.reportIntervalMs } : {}),
        // the cluster's embedded broker is in this process: no TLS round trip per message
        ...(cfg.mqttUrl === undefined && cluster.localBrokerStream !== undefined ? { mqttStream: cluster.localBrokerStream } : {}),
      });
      const w = worker;
      closers.push(() => w.close());
    }
    return {
      root,
      link: rootLink,
      cluster,
      worker,
      containerd,
      tokens,
      netmanager,
      publicAddress,
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
