/**
 * /infrastructure: the root, its clusters and their workers as a tree, with live bars (each
 * aggregate of a cluster publishes a `cluster` event: the list is read again, at most twice a
 * second), GPUs, overlay subnets and measured RTTs, and the clusters on an offline world map when
 * their locations are coordinates.
 */
import './views.css';
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type { ClusterDoc, DeadWorker, WorkerSummary } from '@oak/contracts';
import { api, hasRole, session } from '../../lib/api.ts';
import { useStore } from '../../lib/store.ts';
import { Confirm } from '../../components/confirm.tsx';
import { useEpoch, useEvents } from '../../lib/events.ts';
import { ErrorBox } from '../../components/error-box.tsx';
import type { ViewProps } from '../registry.ts';
import { WorldMap, parseLocation, type MapPoint } from './world-map.tsx';

/** one bar: used of total, with the numbers in text */
export function Bar({ label, used, total, unit }: { label: string; used: number | undefined; total: number | undefined; unit: string }) {
  if (used === undefined || total === undefined || !(total > 0)) {
    return (
      <div className="bar">
        <span className="bar-label">{label}</span> <span className="muted">not reported</span>
      </div>
    );
  }
  const u = Math.min(Math.max(0, used), total);
  const pct = Math.round((u / total) * 100);
  return (
    <div className="bar">
      <span className="bar-label">{label}</span>
      <meter min={0} max={total} value={u} low={total * 0.7} high={total * 0.9} optimum={0} aria-label={`${label} ${pct}%`} />
      <span className="bar-text">
        {num(u)} / {num(total)} {unit} ({pct}%)
      </span>
    </div>
  );
}

function num(v: number): string {
  return v >= 100 ? Math.round(v).toLocaleString() : (Math.round(v * 10) / 10).toString();
}

/** `12 s ago`, `3 min ago`, `2 h ago`, `4 d ago` */
export function ago(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (!Number.isFinite(s)) return '';
  if (s < 90) return `${s} s ago`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
  if (s < 36 * 3600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** a time as text and machine-readable, with how long ago */
function When({ iso }: { iso: string }) {
  return (
    <time dateTime={iso} title={iso}>
      {new Date(iso).toLocaleString()} ({ago(iso)})
    </time>
  );
}

/** a worker its cluster declared dead: listed until it comes back or is removed */
function Dead({ w, c, canRemove }: { w: DeadWorker; c: ClusterDoc; canRemove: boolean }) {
  const [asking, setAsking] = useState(false);
  const unreachable = c.status !== 'ACTIVE';
  return (
    <li className="worker card dead" aria-label={`worker ${w.name}`}>
      <h4>
        {w.name} <small className="mono">{w.id}</small>
      </h4>
      <dl className="facts">
        <dt>Status</dt>
        <dd>
          <span className="state state-DEAD" data-worker-state="dead">
            dead
          </span>{' '}
          since <When iso={w.dead_since} />
        </dd>
        <dt>Why</dt>
        <dd>{w.reason}</dd>
        <dt>Last seen</dt>
        <dd>
          <When iso={w.last_seen} />
        </dd>
        <dt>Location</dt>
        <dd>{w.location ?? <span className="muted">none</span>}</dd>
      </dl>
      <p className="muted">Its instances were moved to other workers. It stays listed until it reports again or is removed.</p>
      {canRemove && (
        <button type="button" disabled={unreachable} title={unreachable ? 'its cluster is not connected' : undefined} onClick={() => setAsking(true)} aria-label={`Remove worker ${w.name}`}>
          Remove
        </button>
      )}
      {asking && (
        <Confirm
          title={`Remove worker ${w.name} from ${c.cluster_name}?`}
          confirmLabel="Remove worker"
          onConfirm={async () => {
            await api.del(`/api/cluster/${encodeURIComponent(c._id)}/node/${encodeURIComponent(w.id)}`);
          }}
          onClose={() => setAsking(false)}
        >
          <p>Its cluster drops its credentials: it cannot come back without a new join token.</p>
        </Confirm>
      )}
    </li>
  );
}

function Worker({ w, names, lost }: { w: WorkerSummary; names: Map<string, string>; lost: ClusterDoc | undefined }) {
  const loc = w.location ?? null;
  const cores = w.cpu_cores_total;
  const memTotal = w.memory_total_mb;
  const memUsed = memTotal !== undefined && w.memory_available_mb !== undefined ? memTotal - w.memory_available_mb : undefined;
  const diskUsed = w.disk_total_mb !== undefined && w.disk_free_mb !== undefined ? w.disk_total_mb - w.disk_free_mb : undefined;
  const rtts = (w.net?.rtt ?? []).slice().sort((a, b) => (names.get(a.worker_id) ?? a.worker_id).localeCompare(names.get(b.worker_id) ?? b.worker_id));
  return (
    <li className="worker card" aria-label={`worker ${w.name}`}>
      <h4>
        {w.name} <small className="mono">{w.id}</small>
      </h4>
      <dl className="facts">
        <dt>Status</dt>
        {lost === undefined ? (
          <dd>
            <span className="state state-RUNNING" data-worker-state="alive">
              alive
            </span>
          </dd>
        ) : (
          <dd>
            <span className="state state-DEAD" data-worker-state="unreachable">
              unreachable
            </span>{' '}
            with its cluster{lost.last_seen !== null && (
              <>
                , last known <When iso={lost.last_seen} />
              </>
            )}
          </dd>
        )}
        <dt>Location</dt>
        <dd>{loc ?? <span className="muted">none</span>}</dd>
        <dt>Runs</dt>
        <dd>{w.virtualizations.join(', ') || <span className="muted">nothing</span>}</dd>
        {(w.arch !== undefined || w.os !== undefined) && (
          <>
            <dt>System</dt>
            <dd>{[w.os, w.arch].filter(Boolean).join(' / ')}</dd>
          </>
        )}
      </dl>
      <Bar label="CPU" used={w.cpu_percent === undefined || cores === undefined ? undefined : (w.cpu_percent / 100) * cores} total={cores} unit="cores busy" />
      <Bar label="CPU reserved" used={cores === undefined ? undefined : cores - w.cpu_cores_free} total={cores} unit="cores" />
      <Bar label="Memory" used={memUsed} total={memTotal} unit="MB" />
      <Bar label="Disk" used={diskUsed} total={w.disk_total_mb} unit="MB" />
      {w.gpus !== undefined && w.gpus.length > 0 && (
        <div>
          <strong>GPUs</strong> ({w.gpus_free ?? '?'} of {w.gpus.length} free)
          <ul className="plain">
            {w.gpus.map((g) => (
              <li key={g.index}>
                #{g.index} {g.name}
                {g.memory_mb > 0 ? `, ${num(g.memory_mb)} MB` : ''}
              </li>
            ))}
          </ul>
        </div>
      )}
      {w.net !== undefined && (
        <div className="net">
          <strong>Overlay</strong>: subnet <span className="mono">{w.net.subnet ?? 'none'}</span>
          {w.net.subnet_v6 !== undefined && w.net.subnet_v6 !== null && (
            <>
              {' '}
              and <span className="mono">{w.net.subnet_v6}</span>
            </>
          )}
          {w.net.host_ip !== undefined && w.net.host_ip !== null && (
            <>
              , tunnel <span className="mono">{w.net.host_ip}:{w.net.host_port ?? '?'}</span>
            </>
          )}
          {rtts.length > 0 && (
            <table className="rtt">
              <caption>Measured round trips from {w.name}</caption>
              <thead>
                <tr>
                  <th scope="col">to worker</th>
                  <th scope="col">RTT</th>
                </tr>
              </thead>
              <tbody>
                {rtts.map((r) => (
                  <tr key={r.worker_id}>
                    <td>{names.get(r.worker_id) ?? <span className="mono">{r.worker_id}</span>}</td>
                    <td>{r.rtt_ms === null ? <span className="muted">unreachable</span> : `${r.rtt_ms.toFixed(1)} ms`}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </div>
      )}
    </li>
  );
}

function Cluster({ c, names, canRemove }: { c: ClusterDoc; names: Map<string, string>; canRemove: boolean }) {
  const r = c.resources;
  const workers = r?.worker_summary ?? [];
  const dead = r?.dead_workers ?? [];
  const lost = c.status !== 'ACTIVE' ? c : undefined;
  return (
    <li className="cluster">
      <details open>
        <summary>
          <h3>
            {c.cluster_name}{' '}
            <span className={`state ${c.status === 'ACTIVE' ? 'state-RUNNING' : 'state-FAILED'}`} data-cluster-state={c.status === 'ACTIVE' ? 'connected' : 'unreachable'}>
              {c.status === 'ACTIVE' ? 'connected' : 'unreachable'}
            </span>
          </h3>
          <span className="muted">
            {c.cluster_location ?? 'no location'} · {r?.workers ?? 0} worker{r?.workers === 1 ? '' : 's'}
            {dead.length > 0 ? `, ${dead.length} dead` : ''}
            {c.last_seen !== null && (
              <>
                {' '}
                · {lost !== undefined ? 'unreachable, last heard from' : 'last seen'} <When iso={c.last_seen} />
              </>
            )}
            {c.last_seen === null && lost !== undefined ? ' · never connected' : ''}
          </span>
        </summary>
        {r !== null && (
          <div className="cluster-bars">
            <Bar label="CPU reserved" used={r.cpu_cores_total - r.cpu_cores_free} total={r.cpu_cores_total} unit="cores" />
            <Bar label="Memory reserved" used={r.memory_total_mb - r.memory_free_mb} total={r.memory_total_mb} unit="MB" />
            <p className="muted">Runs: {r.virtualizations.join(', ') || 'nothing'}{r.gpus_free > 0 ? ` · ${r.gpus_free} GPUs free` : ''}</p>
          </div>
        )}
        {lost !== undefined && workers.length + dead.length > 0 && <p className="muted">Not connected: its workers as it last reported them.</p>}
        {workers.length + dead.length === 0 ? (
          <p className="muted">{c.status === 'ACTIVE' ? 'No worker has joined yet.' : 'Not connected: its workers are not known now.'}</p>
        ) : (
          <ul className="workers plain" aria-label={`workers of ${c.cluster_name}`}>
            {workers.map((w) => (
              <Worker key={w.id} w={w} names={names} lost={lost} />
            ))}
            {dead.map((w) => (
              <Dead key={w.id} w={w} c={c} canRemove={canRemove} />
            ))}
          </ul>
        )}
      </details>
    </li>
  );
}

export default function InfrastructureView(_props: ViewProps) {
  const [clusters, setClusters] = useState<ClusterDoc[]>();
  const [error, setError] = useState<unknown>();
  const epoch = useEpoch();
  const canRemove = hasRole(useStore(session), 'Infrastructure_Provider');
  // the "… ago" texts move on even when no event comes (a lost cluster sends none)
  const [, setTick] = useState(0);
  useEffect(() => {
    const t = setInterval(() => setTick((n) => n + 1), 10_000);
    return () => clearInterval(t);
  }, []);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const last = useRef(0);
  const load = useCallback(() => {
    last.current = Date.now();
    api.get<ClusterDoc[]>('/api/clusters/').then(
      (list) => {
        setClusters(list.slice().sort((a, b) => a.cluster_name.localeCompare(b.cluster_name)));
        setError(undefined);
      },
      (err: unknown) => setError(err),
    );
  }, []);
  useEffect(() => {
    load();
  }, [load, epoch]);
  useEffect(() => () => clearTimeout(timer.current), []);
  // every aggregate is a cluster event: read the list again, at most every 500 ms
  useEvents((e) => {
    if (e.type !== 'cluster' || timer.current !== undefined) return;
    timer.current = setTimeout(() => {
      timer.current = undefined;
      load();
    }, Math.max(0, 500 - (Date.now() - last.current)));
  });
  const names = useMemo(() => {
    const m = new Map<string, string>();
    for (const c of clusters ?? []) for (const w of [...(c.resources?.worker_summary ?? []), ...(c.resources?.dead_workers ?? [])]) m.set(w.id, `${w.name} (${c.cluster_name})`);
    return m;
  }, [clusters]);
  const points = useMemo<MapPoint[]>(() => {
    const out: MapPoint[] = [];
    for (const c of clusters ?? []) {
      const p = parseLocation(c.cluster_location);
      if (p !== null) out.push({ id: c._id, label: c.cluster_name, lat: p.lat, long: p.long, active: c.status === 'ACTIVE' });
    }
    return out;
  }, [clusters]);
  return (
    <section aria-labelledby="infra-title">
      <h1 id="infra-title">Infrastructure</h1>
      <ErrorBox error={error} />
      {points.length > 0 && <WorldMap points={points} title="Clusters with coordinates as their location (filled: connected)" />}
      {clusters === undefined && error === undefined && <p aria-busy="true">Loading…</p>}
      {clusters !== undefined && (
        <div className="tree">
          <p>
            <strong>Root</strong> <span className="mono">{location.host}</span> · {clusters.length} cluster{clusters.length === 1 ? '' : 's'}, {clusters.filter((c) => c.status === 'ACTIVE').length} connected
          </p>
          {clusters.length === 0 ? (
            <p className="muted">No cluster has joined this root yet: create a cluster join token (Join tokens) and start oak-cluster with it.</p>
          ) : (
            <ul className="clusters plain" aria-label="clusters">
              {clusters.map((c) => (
                <Cluster key={c._id} c={c} names={names} canRemove={canRemove} />
              ))}
            </ul>
          )}
        </div>
      )}
    </section>
  );
}
