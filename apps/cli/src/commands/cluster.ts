/** `oak cluster ls|info` and `oak node ls|rm` (workers, from the clusters' summaries). */
import type { Command } from 'commander';
import { UsageError } from '../errors.ts';
import type { ClusterDoc, WorkerSummary } from '@oak/contracts';
import { session } from '../context.ts';
import { age, dash, emit, keyValues, status, table, type Ui } from '../output.ts';

function cpu(c: ClusterDoc): string {
  const r = c.resources;
  return r ? `${round(r.cpu_cores_free)}/${round(r.cpu_cores_total)}` : '-';
}

function mem(c: ClusterDoc): string {
  const r = c.resources;
  return r ? `${Math.round(r.memory_free_mb)}/${Math.round(r.memory_total_mb)}` : '-';
}

function round(n: number): string {
  return String(Math.round(n * 10) / 10);
}

/** at most this many characters of the GPU column */
export const GPU_WIDTH = 40;

/**
 * `1/2 NVIDIA T4 15360MB` (free/total, then each model with its memory and, for several of one
 * kind, a count: `2x NVIDIA A100 40960MB`); `-` without GPUs; cut at GPU_WIDTH.
 */
export function gpuText(w: WorkerSummary): string {
  const devs = w.gpus ?? [];
  if (devs.length === 0) return w.gpus_free !== undefined && w.gpus_free > 0 ? `${round(w.gpus_free)} free` : '-';
  const kinds = new Map<string, number>();
  for (const g of devs) {
    // a worker's text goes to a terminal: no control characters
    const name = g.name.replace(/[\u0000-\u001f\u007f-\u009f]/g, '').trim();
    const k = `${name || 'GPU'}${g.memory_mb > 0 ? ` ${g.memory_mb}MB` : ''}`;
    kinds.set(k, (kinds.get(k) ?? 0) + 1);
  }
  const models = [...kinds].map(([k, n]) => (n > 1 ? `${n}x ${k}` : k)).join(', ');
  const text = `${round(Math.max(0, w.gpus_free ?? 0))}/${devs.length} ${models}`;
  return text.length <= GPU_WIDTH ? text : `${text.slice(0, GPU_WIDTH - 1)}…`;
}

/** at most this many characters of the RTT column */
export const RTT_WIDTH = 40;

/** `w2 1.2ms, w3 0.8ms` (peer names where known, `-` for no answer), cut at RTT_WIDTH */
export function rttText(w: WorkerSummary, names: ReadonlyMap<string, string> = new Map()): string {
  const list = w.net?.rtt ?? [];
  if (list.length === 0) return '-';
  const text = [...list]
    .sort((a, b) => (a.rtt_ms ?? Infinity) - (b.rtt_ms ?? Infinity))
    .map((p) => `${names.get(p.worker_id) ?? p.worker_id} ${p.rtt_ms === null ? '-' : `${Math.round(p.rtt_ms * 10) / 10}ms`}`)
    .join(', ');
  return text.length <= RTT_WIDTH ? text : `${text.slice(0, RTT_WIDTH - 1)}…`;
}

/** the NodeEngine's version, with a fleet upgrade under way or failed, or `(no self-upgrade)` */
export function versionText(w: WorkerSummary): string {
  const v = w.version ?? '-';
  const u = w.upgrade;
  if (u !== undefined && u.phase !== 'done') return `${v} (${u.action} to ${u.version}: ${u.phase})`;
  return w.self_upgrade_blocker ? `${v} (no self-upgrade)` : v;
}

async function workersTable(ui: Ui, rows: { cluster: string; w: WorkerSummary }[], withCluster: boolean): Promise<string> {
  const names = new Map(rows.map(({ w }) => [w.id, w.name]));
  return table(
    ui,
    ['NODE', 'ID', ...(withCluster ? ['CLUSTER'] : []), 'VERSION', 'NETMANAGER', 'CPU FREE', 'MEMORY FREE (MB)', 'GPUS FREE/TOTAL', 'VIRTUALIZATIONS', 'LOCATION', 'SUBNET', 'RTT'],
    rows.map(({ cluster, w }) => [
      w.name,
      w.id,
      ...(withCluster ? [cluster] : []),
      versionText(w),
      dash(w.netmanager_version ?? undefined),
      round(w.cpu_cores_free),
      String(Math.round(w.memory_free_mb)),
      gpuText(w),
      w.virtualizations.join(','),
      dash(w.location),
      dash(w.net?.subnet),
      rttText(w, names),
    ]),
  );
}

export function registerCluster(program: Command): void {
  const cluster = program
    .command('cluster')
    .alias('clusters')
    .alias('cl')
    .description('clusters known to the root, with their aggregate resources')
    .addHelpText('after', '\nExamples:\n  $ oak cluster ls\n  $ oak cluster info edge1');

  cluster
    .command('ls')
    .alias('list')
    .description('list clusters: state, location, workers, free CPU and memory')
    .option('--active', 'only the clusters connected now')
    .option('-a, --all', "every registered cluster, connected or not (the default here; Oakestra's flag, accepted)")
    .addHelpText('after', '\nExamples:\n  $ oak cluster ls\n  $ oak cluster ls --active -o json')
    .action(async (opts: { active?: boolean; all?: boolean }, cmd: Command) => {
      const s = session(cmd);
      if (opts.active === true && opts.all === true) throw new UsageError('give --active or --all, not both');
      const list = opts.active === true ? await s.api.request<ClusterDoc[]>('GET', '/api/clusters/active') : await s.api.clusters();
      await emit(s.ui, list, async () => {
        if (list.length === 0) return 'no clusters; start one (oak-cluster with SYSTEM_MANAGER_URL pointing at this root), or run the 1-DOC with \'oak up\'';
        return table(
          s.ui,
          ['NAME', 'ID', 'STATUS', 'VERSION', 'LOCATION', 'WORKERS', 'CPU FREE/TOTAL', 'MEMORY FREE/TOTAL (MB)', 'LAST SEEN'],
          list.map((c) => [c.cluster_name, c._id, status(s.ui.color, c.status), dash(c.version ?? c.resources?.version), dash(c.cluster_location), String(c.resources?.workers ?? 0), cpu(c), mem(c), c.last_seen ? `${age(c.last_seen)} ago` : '-']),
        );
      });
    });

  cluster
    .command('info')
    .alias('show')
    .alias('i')
    .description('one cluster with its resources and workers')
    .argument('<cluster>', 'cluster id or name')
    .addHelpText('after', '\nExamples:\n  $ oak cluster info edge1\n  $ oak cluster info edge1 -o yaml')
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const s = session(cmd);
      const c = await s.api.cluster(ref);
      await emit(s.ui, c, async () => {
        const r = c.resources;
        const head = keyValues(s.ui, [
          ['name', c.cluster_name],
          ['id', c._id],
          ['status', status(s.ui.color, c.status)],
          ['version', c.version ?? c.resources?.version],
          ['location', c.cluster_location],
          ['last seen', c.last_seen ? `${c.last_seen} (${age(c.last_seen)} ago)` : '-'],
          ['workers', r?.workers ?? 0],
          ['cpu cores free', r ? `${round(r.cpu_cores_free)} of ${round(r.cpu_cores_total)}` : '-'],
          ['memory free', r ? `${Math.round(r.memory_free_mb)} of ${Math.round(r.memory_total_mb)} MB` : '-'],
          ['gpus free', r?.gpus_free],
          ['virtualizations', r?.virtualizations.join(', ')],
        ]);
        const workers = r?.worker_summary ?? [];
        return workers.length === 0 ? `${head}\n\nno workers reported` : `${head}\n\n${await workersTable(s.ui, workers.map((w) => ({ cluster: c.cluster_name, w })), false)}`;
      });
    });

  const node = program
    .command('node')
    .alias('nodes')
    .description('workers (NodeEngines), as their clusters report them')
    .addHelpText('after', '\nExamples:\n  $ oak node ls\n  $ oak node ls --cluster edge1');

  node
    .command('ls')
    .alias('list')
    .description('list workers from the per-worker summaries the clusters send to the root: free CPU, memory, GPUs, overlay')
    .option('-c, --cluster <cluster>', 'only the workers of this cluster (id or name)')
    .addHelpText(
      'after',
      `
The root does not talk to workers: this list is the worker summary of each cluster's last
report (GET /api/clusters/), so it is as fresh as that report (a few seconds).
GPUS is free/total NVIDIA GPUs with each model and its memory (free: not held by an instance).
SUBNET is the worker's overlay subnet (from the root), RTT what its NetManager measured over
the tunnel to the other workers (lowest first).
With -o json: one object per worker, its summary (with \`gpus\`: index, name, memory_mb, uuid
of each GPU, \`gpus_free\`, and \`net\`: subnet, subnet_v6, host_ip, host_port, rtt) plus
cluster_id and cluster_name.

Examples:
  $ oak node ls
  $ oak node ls --cluster edge1 -o json`,
    )
    .action(async (opts: { cluster?: string }, cmd: Command) => {
      const s = session(cmd);
      const clusters = opts.cluster !== undefined ? [await s.api.cluster(opts.cluster)] : await s.api.clusters();
      const rows = clusters.flatMap((c) => (c.resources?.worker_summary ?? []).map((w) => ({ cluster: c.cluster_name, clusterId: c._id, w })));
      const data = rows.map(({ cluster, clusterId, w }) => ({ ...w, cluster_id: clusterId, cluster_name: cluster }));
      await emit(s.ui, data, async () => (rows.length === 0 ? 'no workers reported by any cluster' : workersTable(s.ui, rows, true)));
    });

  node
    .command('rm')
    .alias('remove')
    .description("remove a worker: its cluster drops its MQTT credentials and disconnects it at once; its instances are rescheduled")
    .argument('<node>', 'worker id or name (oak node ls)')
    .option('-c, --cluster <cluster>', 'the cluster of the worker (id or name); found from the summaries when left out')
    .addHelpText(
      'after',
      `
The worker can join again only with a valid worker token: to keep it out for good, revoke the
token it joined with too (oak token revoke <id>), which removes every worker that used it.
Needs the role Admin or Infrastructure_Provider.

Examples:
  $ oak node rm 3f9c2a1b7d4e5f60a1b2c3d4
  $ oak node rm edge-worker-2 --cluster edge1`,
    )
    .action(async (ref: string, opts: { cluster?: string }, cmd: Command) => {
      const s = session(cmd);
      const clusters = opts.cluster !== undefined ? [await s.api.cluster(opts.cluster)] : await s.api.clusters();
      const hits = clusters.flatMap((c) => (c.resources?.worker_summary ?? []).filter((w) => w.id === ref || w.name === ref).map((w) => ({ c, w })));
      const byId = hits.filter((h) => h.w.id === ref);
      const chosen = byId.length > 0 ? byId : hits;
      let target: { clusterRef: string; nodeId: string };
      if (chosen.length === 1 && chosen[0] !== undefined) target = { clusterRef: chosen[0].c._id, nodeId: chosen[0].w.id };
      else if (chosen.length > 1) throw new UsageError(`${JSON.stringify(ref)} names ${chosen.length} workers`, { hint: 'give the worker id (oak node ls), and --cluster if needed' });
      else if (opts.cluster !== undefined && clusters[0] !== undefined) target = { clusterRef: clusters[0]._id, nodeId: ref };
      else throw new UsageError(`no cluster reports a worker ${JSON.stringify(ref)}`, { hint: 'check oak node ls, or give the cluster with --cluster <cluster> to remove a worker it does not report (e.g. a dead one)' });
      const r = await s.api.request<{ cluster_id: string; cluster_name: string; node_id: string; removed: boolean }>('DELETE', `/api/cluster/${encodeURIComponent(target.clusterRef)}/node/${encodeURIComponent(target.nodeId)}`);
      await emit(s.ui, r, async () => `worker ${r.node_id} removed from cluster ${r.cluster_name}: its credentials are revoked; revoke its token (oak token revoke <id>) to keep it from joining again`);
    });
}
