/** `oak fleet upgrade|status|ls|versions`: NodeEngine fleet upgrades (issue 14, docs/deployment.md#fleet-upgrade). */
import { readFileSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { MAX_ARTIFACT_BYTES, type ArtifactDoc, type RolloutDoc } from '@oak/contracts';
import { parseDuration, session, type Session } from '../context.ts';
import { CliError, UsageError } from '../errors.ts';
import { dash, emit, keyValues, paint, table } from '../output.ts';

function rolloutText(s: Session, r: RolloutDoc): Promise<string> {
  const colour = r.status === 'succeeded' ? 'green' : r.status === 'failed' ? 'red' : 'yellow';
  const head = keyValues(s.ui, [
    ['rollout', r.id],
    ['status', paint(s.ui.color, colour, r.status)],
    ['version', `${r.artifact.version} (linux-${r.artifact.arch}, sha256 ${r.artifact.sha256.slice(0, 16)}…)`],
    ['batches', `${r.current_batch} of ${r.batches}, ${r.batch_size} at a time, health timeout ${r.health_timeout_s} s`],
    ['outcome', r.outcome],
  ]);
  return table(s.ui, ['WORKER', 'CLUSTER', 'BATCH', 'FROM', 'PHASE', 'DETAIL'], r.workers.map((w) => [w.name, w.cluster_name, w.batch === 0 ? '-' : String(w.batch), w.from_version, w.phase, dash(w.detail)])).then((t) => `${head}\n\n${t}`);
}

async function latest(s: Session, id: string | undefined): Promise<RolloutDoc> {
  if (id !== undefined) {
    if (!/^[a-z0-9]{1,40}$/.test(id)) throw new UsageError(`${JSON.stringify(id.slice(0, 60))} is not a rollout id`, { hint: 'oak fleet ls lists them' });
    return s.api.request<RolloutDoc>('GET', `/api/fleet/rollouts/${id}`);
  }
  const [r] = await s.api.request<RolloutDoc[]>('GET', '/api/fleet/rollouts');
  if (!r) throw new CliError('no fleet rollout yet', { hint: 'start one: oak fleet upgrade --artifact release/oak-node-engine-<version>-linux-<arch>.tar.gz' });
  return r;
}

export function registerFleet(program: Command): void {
  const fleet = program
    .command('fleet')
    .description('upgrade the NodeEngines (and NetManagers) of the workers from the root, a batch at a time')
    .addHelpText('after', '\nExamples:\n  $ oak fleet upgrade --artifact release/oak-node-engine-0.2.0-linux-amd64.tar.gz --batch 2\n  $ oak fleet status\n  $ oak fleet versions');

  fleet
    .command('upgrade')
    .description('upload a node-engine artifact (make dist) to the root and roll it out to the connected workers')
    .requiredOption('--artifact <file>', 'release/oak-node-engine-<version>-linux-<arch>.tar.gz')
    .option('-c, --cluster <cluster>', 'only the workers of this cluster (name or id)')
    .option('--batch <n>', 'workers upgraded at once', '1')
    .option('--health-timeout <duration>', 'how long each worker has to come back healthy', '120s')
    .option('--no-wait', 'start the rollout and return (oak fleet status follows it)')
    .addHelpText(
      'after',
      `
Each worker of a batch fetches the artifact from its cluster (which fetches it from the root),
checks its sha256, installs it over its oak install, restarts itself and re-adopts its instances
(they keep running). A batch is healthy when each worker re-registered with the new version,
reports again and still runs its instances; then the next batch starts. The first worker that
is not healthy in time (or cannot upgrade itself: not installed with oak install, inside oakd)
stops the rollout, and its batch goes back to the previous version. Needs the role Admin.
Exit code 0 when every worker was upgraded, 1 when the rollout stopped.

Examples:
  $ oak fleet upgrade --artifact oak-node-engine-0.2.0-linux-amd64.tar.gz
  $ oak fleet upgrade --artifact oak-node-engine-0.2.0-linux-arm64.tar.gz --cluster edge1 --batch 5 --health-timeout 5m`,
    )
    .action(async (opts: { artifact: string; cluster?: string; batch: string; healthTimeout: string; wait: boolean }, cmd: Command) => {
      const s = session(cmd);
      if (!/^\d{1,4}$/.test(opts.batch) || Number(opts.batch) < 1) throw new UsageError(`--batch ${JSON.stringify(opts.batch)} is not a whole number from 1`);
      const timeoutS = Math.round(parseDuration(opts.healthTimeout, '--health-timeout') / 1000);
      let size: number;
      try {
        size = statSync(opts.artifact).size;
      } catch {
        throw new UsageError(`--artifact ${opts.artifact}: no such file`, { hint: 'make dist writes release/oak-node-engine-<version>-linux-<arch>.tar.gz' });
      }
      if (size > MAX_ARTIFACT_BYTES) throw new UsageError(`--artifact ${opts.artifact} is ${size} bytes, more than the root takes (${MAX_ARTIFACT_BYTES})`);
      const art = await s.api.request<ArtifactDoc>('POST', '/api/fleet/artifacts', { bytes: readFileSync(opts.artifact), contentType: 'application/gzip', timeoutMs: 300_000 });
      s.ui.err(`uploaded ${art.program} ${art.version} (linux-${art.arch}, ${art.size} bytes, sha256 ${art.sha256})`);
      let r = await s.api.request<RolloutDoc>('POST', '/api/fleet/rollouts', {
        body: { artifact: art.sha256, batch: Number(opts.batch), health_timeout_s: timeoutS, ...(opts.cluster !== undefined ? { cluster: opts.cluster } : {}) },
      });
      s.ui.err(`rollout ${r.id}: ${r.workers.filter((w) => w.phase === 'pending').length} worker(s) in ${r.batches} batch(es)`);
      if (opts.wait) {
        const seen = new Map<string, string>();
        for (;;) {
          for (const w of r.workers) {
            const k = `${w.phase} ${w.detail}`;
            if (seen.get(w.id) !== k && w.phase !== 'pending') s.ui.err(`  ${w.name}: ${w.phase}${w.detail ? ` (${w.detail})` : ''}`);
            seen.set(w.id, k);
          }
          if (r.status !== 'running') break;
          await new Promise((res) => setTimeout(res, 1000));
          r = await s.api.request<RolloutDoc>('GET', `/api/fleet/rollouts/${r.id}`);
        }
      }
      const final = r;
      await emit(s.ui, final, () => rolloutText(s, final));
      if (final.status === 'failed') throw new CliError(`the rollout stopped: ${final.outcome ?? ''}`, { hint: `oak fleet status ${final.id}` });
    });

  fleet
    .command('status')
    .description('one rollout (the latest without an id): its batches, each worker, the outcome')
    .addHelpText('after', '\nExamples:\n  $ oak fleet status\n  $ oak fleet status 6b1161a1185821696f07e08f -o json')
    .argument('[rollout]', 'rollout id (oak fleet ls)')
    .action(async (id: string | undefined, _opts: unknown, cmd: Command) => {
      const s = session(cmd);
      const r = await latest(s, id);
      await emit(s.ui, r, () => rolloutText(s, r));
    });

  fleet
    .command('ls')
    .alias('list')
    .description('the last rollouts, newest first')
    .addHelpText('after', '\nExamples:\n  $ oak fleet ls\n  $ oak fleet ls -o json')
    .action(async (_opts: unknown, cmd: Command) => {
      const s = session(cmd);
      const list = await s.api.request<RolloutDoc[]>('GET', '/api/fleet/rollouts');
      await emit(s.ui, list, () =>
        list.length === 0 ? 'no fleet rollout yet' : table(s.ui, ['ID', 'STATUS', 'VERSION', 'WORKERS', 'STARTED', 'OUTCOME'], list.map((r) => [r.id, r.status, r.artifact.version, String(r.workers.length), r.created_at, dash(r.outcome)])),
      );
    });

  fleet
    .command('versions')
    .description('the version of the root, each cluster orchestrator, NodeEngine and NetManager')
    .addHelpText('after', '\nExamples:\n  $ oak fleet versions\n  $ oak fleet versions -o json')
    .action(async (_opts: unknown, cmd: Command) => {
      const s = session(cmd);
      const v = await s.api.request<{ root: string; clusters: { name: string; status: string; version: string | null }[]; workers: { name: string; cluster_name: string; version: string | null; netmanager_version: string | null; self_upgrade_blocker: string | null }[] }>('GET', '/api/fleet/versions');
      await emit(s.ui, v, async () => {
        const rows = [
          ['root', '-', v.root, '-'],
          ...v.clusters.map((c) => ['cluster', c.name, dash(c.version), c.status]),
          ...v.workers.map((w) => [`worker ${w.name}`, w.cluster_name, `${dash(w.version)}${w.netmanager_version ? ` (NetManager ${w.netmanager_version})` : ''}`, w.self_upgrade_blocker ? `no self-upgrade: ${w.self_upgrade_blocker}` : 'self-upgrade ok']),
        ];
        return table(s.ui, ['COMPONENT', 'CLUSTER', 'VERSION', 'NOTE'], rows);
      });
    });
}
