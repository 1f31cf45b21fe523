/**
 * The overlay messages of the root's link end (issue 8; moved out of link/control.ts in issue 9,
 * behaviour unchanged): `subnet_request` gives a worker its subnet (owned by the asking cluster
 * from then on); `instance_status.net` is checked against the worker's subnet before it is stored
 * (checkNet); `table_query` answers a service's table across all clusters (RUNNING instances with
 * net info) and registers the link's interest (bounded, dropped with the link or by
 * `interest_remove`); any instance event of a job sends its table to the interested links
 * (`table_update`, coalesced); `peers` gives every cluster the overlay workers of the others
 * after its welcome and whenever they change. Requests are rate limited per link and answered
 * with `error` when refused.
 */
import { instanceName } from '@oak/contracts';
import type { ClusterToRoot } from '@oak/contracts';
import type { Store } from '@oak/store';
import type { EventHub } from '../events.ts';
import { overlayFor } from '../overlay.ts';
import type { LinkLog } from './codec.ts';
import { LINK_NET_BURST, LINK_NET_RATE, MAX_INTEREST_PER_LINK, TABLE_UPDATE_COALESCE_MS, TokenBucket, netProblem, peersOf, tableOf } from './net.ts';
import type { LinkServer } from './server.ts';

export interface NetLimits {
  /** subnet_request + table_query per second, sustained (default LINK_NET_RATE) */
  rate?: number;
  /** and at once (default LINK_NET_BURST) */
  burst?: number;
  /** jobs one link may be interested in (default MAX_INTEREST_PER_LINK) */
  maxInterest?: number;
}

export interface NetControlOptions {
  link: LinkServer;
  store: Store;
  events: EventHub;
  log: LinkLog;
  limits?: NetLimits;
  /** a cluster whose workers are peers: connected, or away but not yet lost */
  present: (clusterId: string) => boolean;
}

export type InstanceStatusMessage = Extract<ClusterToRoot, { type: 'instance_status' }>;

export interface NetControl {
  /** subnet_request, table_query, interest_remove: handled (true) or not an overlay message (false) */
  onMessage(clusterId: string, m: ClusterToRoot): boolean;
  /** the report with its `net` removed when the root does not vouch for it */
  checkNet(clusterId: string, m: InstanceStatusMessage): Promise<InstanceStatusMessage>;
  /** a link came or went: its interest and rate go, peers are sent again */
  linkChanged(clusterId: string): void;
  /** peers are recomputed and sent where they changed */
  queuePeers(): void;
  close(): Promise<void>;
}

const WORKER_ID = /^[^/+#\s$\u0000-\u001f\u007f]{1,200}$/;

export function createNetControl(o: NetControlOptions): NetControl {
  const { link, store, events, log } = o;
  const overlay = overlayFor(store);
  const netRate = o.limits?.rate ?? LINK_NET_RATE;
  const netBurst = o.limits?.burst ?? LINK_NET_BURST;
  const maxInterest = o.limits?.maxInterest ?? MAX_INTEREST_PER_LINK;
  /** per live link: the jobs whose tables it asked for (table_update goes there) */
  const interest = new Map<string, Set<string>>();
  /** per live link: subnet_request + table_query rate */
  const buckets = new Map<string, TokenBucket>();
  /** jobs whose table changed, sent together after TABLE_UPDATE_COALESCE_MS */
  const changedTables = new Set<string>();
  let tableTimer: NodeJS.Timeout | undefined;
  /** the peers message each connected cluster got last (JSON), to send only changes */
  const lastPeers = new Map<string, string>();
  let peersChain: Promise<void> = Promise.resolve();
  let peersQueued = false;
  let closed = false;

  const bounded = (text: string): string => text.slice(0, 500);
  const errorText = (err: unknown): string => bounded(err instanceof Error ? err.message : String(err));

  /** subnet_request + table_query: false (and the request answered with an error) when over the rate */
  const allowed = (clusterId: string): boolean => {
    let b = buckets.get(clusterId);
    if (!b) buckets.set(clusterId, (b = new TokenBucket(netRate, netBurst)));
    return b.take();
  };

  const answerSubnet = async (clusterId: string, m: Extract<ClusterToRoot, { type: 'subnet_request' }>): Promise<void> => {
    if (!allowed(clusterId)) {
      link.send(clusterId, { type: 'subnet_result', request_id: m.request_id, error: `too many overlay requests (at most ${netRate}/s); try again shortly` });
      return;
    }
    if (!WORKER_ID.test(m.worker_id)) {
      link.send(clusterId, { type: 'subnet_result', request_id: m.request_id, error: 'worker_id must be 1..200 characters without /, +, #, $, spaces or control characters' });
      return;
    }
    try {
      const r = await overlay.allocateWorker(clusterId, m.worker_id);
      log.debug({ cluster_id: clusterId, worker: m.worker_id, subnet: r.subnet }, 'overlay: worker subnet');
      link.send(clusterId, {
        type: 'subnet_result', request_id: m.request_id, subnet: r.subnet, subnet_v6: r.subnet_v6,
        ...(overlay.extraServiceRanges.length > 0 ? { service_ranges: [...overlay.extraServiceRanges] } : {}),
      });
    } catch (err) {
      log.warn({ cluster_id: clusterId, worker: m.worker_id, err: errorText(err) }, 'overlay: subnet refused');
      link.send(clusterId, { type: 'subnet_result', request_id: m.request_id, error: errorText(err) });
    }
  };

  const readTable = async (job: string) => {
    const s = await store.getServiceByJobName(job);
    const rows = s ? await store.listInstances({ service_id: s.id, statuses: ['RUNNING'] }) : [];
    // instances the API or the reconciler stops are out of the table at once
    return { service: s, table: tableOf(job, s, rows, (r) => r.desired === 'stop') };
  };

  const answerTable = async (clusterId: string, m: Extract<ClusterToRoot, { type: 'table_query' }>): Promise<void> => {
    const fail = (error: string): void => void link.send(clusterId, { type: 'table_result', request_id: m.request_id, error: bounded(error) });
    if (!allowed(clusterId)) return fail(`too many overlay requests (at most ${netRate}/s); try again shortly`);
    let job = m.job_name;
    if (job === undefined) {
      if (m.ip === undefined) return fail('give job_name or ip');
      job = await overlay.jobOfAddress(m.ip);
      if (job === undefined) return fail(`no service or instance has the address ${JSON.stringify(m.ip.slice(0, 64))}`);
    }
    const { service, table } = await readTable(job);
    if (!service) return fail(`no service ${JSON.stringify(job.slice(0, 255))}`);
    if (!link.isConnected(clusterId)) return;
    let set = interest.get(clusterId);
    if (!set) interest.set(clusterId, (set = new Set()));
    if (!set.has(job)) {
      if (set.size >= maxInterest) return fail(`this link is interested in ${set.size} services already (at most ${maxInterest}); send interest_remove for those no longer needed`);
      set.add(job);
    }
    link.send(clusterId, { type: 'table_result', request_id: m.request_id, table });
  };

  const flushTables = async (): Promise<void> => {
    tableTimer = undefined;
    const jobs = [...changedTables];
    changedTables.clear();
    for (const job of jobs) {
      const targets = [...interest].filter(([, set]) => set.has(job)).map(([id]) => id);
      if (targets.length === 0) continue;
      const { table } = await readTable(job);
      for (const id of targets) link.send(id, { type: 'table_update', table });
    }
  };

  /** a job's instances changed: its interested links get its table (coalesced) */
  const tableChanged = (job: string): void => {
    if (closed) return;
    let wanted = false;
    for (const set of interest.values()) if (set.has(job)) wanted = true;
    if (!wanted) return;
    changedTables.add(job);
    if (tableTimer) return;
    tableTimer = setTimeout(() => {
      void flushTables().catch((err: unknown) => log.error({ err }, 'overlay: table_update failed'));
    }, TABLE_UPDATE_COALESCE_MS);
    tableTimer.unref?.();
  };

  const unsubscribeTables = events.subscribe((e) => {
    if (e.type === 'instance') tableChanged(e.job_name);
    else if (e.type === 'service' && e.action === 'updated') {
      void store.getService(e.microserviceID).then((s) => s && tableChanged(s.job_name)).catch(() => undefined);
    }
  });

  /** every connected cluster gets the overlay peers of the other clusters (connected or within their grace period), when they changed */
  const sendPeers = async (): Promise<void> => {
    peersQueued = false;
    const clusters = await store.listClusters();
    const view = await overlay.view();
    const given = (w: string) => {
      const subnet = view.ipam.workerSubnet(w);
      return subnet === undefined ? undefined : { subnet, subnet_v6: view.ipam.workerSubnetV6(w) ?? null, owner: view.owners.get(w) };
    };
    const per = clusters.filter((c) => link.isConnected(c.id) || o.present(c.id)).map((c) => [c.id, peersOf(c.id, c.resources, given)] as const);
    for (const id of link.connectedClusters()) {
      const peers = per.filter(([cid]) => cid !== id).flatMap(([, p]) => p);
      const text = JSON.stringify(peers);
      if (lastPeers.get(id) === text) continue;
      if (link.send(id, { type: 'peers', peers })) lastPeers.set(id, text);
    }
  };

  const queuePeers = (): void => {
    if (closed || peersQueued) return;
    peersQueued = true;
    peersChain = peersChain.then(sendPeers).catch((err: unknown) => log.error({ err }, 'overlay: peers failed'));
  };

  return {
    onMessage(clusterId, m) {
      switch (m.type) {
        case 'subnet_request':
          void answerSubnet(clusterId, m).catch((err: unknown) => log.error({ err }, 'overlay: subnet_request failed'));
          return true;
        case 'table_query':
          void answerTable(clusterId, m).catch((err: unknown) => {
            log.error({ err }, 'overlay: table_query failed');
            link.send(clusterId, { type: 'table_result', request_id: m.request_id, error: 'the root could not read the table' });
          });
          return true;
        case 'interest_remove':
          interest.get(clusterId)?.delete(m.job_name);
          return true;
        default:
          return false;
      }
    },
    async checkNet(clusterId, m) {
      if (m.net === undefined || m.net === null) return m;
      const info = m.worker_id === null ? undefined : await overlay.workerInfo(m.worker_id);
      const problem = info && info.owner !== undefined && info.owner !== clusterId ? 'the worker belongs to another cluster' : netProblem(m.net, info);
      if (problem === undefined) return m;
      log.warn({ cluster_id: clusterId, instance: instanceName(m.job_name, m.instance_number), worker: m.worker_id, problem }, 'link: instance net info refused');
      const msg = { ...m };
      delete msg.net;
      return msg;
    },
    linkChanged(clusterId) {
      interest.delete(clusterId);
      buckets.delete(clusterId);
      lastPeers.delete(clusterId);
      queuePeers();
    },
    queuePeers,
    async close() {
      closed = true;
      clearTimeout(tableTimer);
      unsubscribeTables();
      await peersChain;
    },
  };
}
