/**
 * One application: its services and their instances, live; the actions the CLI has (deploy,
 * scale, rolling update, rollback, undeploy, delete), destructive ones behind a confirmation.
 */
import { Fragment, useEffect, useState, type ReactNode } from 'react';
import type { InstanceDoc, ServiceDoc, ServiceVersionDoc } from '@oak/contracts';
import type { ViewProps } from '../registry.ts';
import { api } from '../../lib/api.ts';
import { Link, navigate } from '../../lib/router.tsx';
import { ErrorBox } from '../../components/error-box.tsx';
import { Confirm } from '../../components/confirm.tsx';
import { usePlacementNames, type Names } from '../../lib/names.ts';
import { liveInstances, useApplications } from './data.ts';
import { ServiceUpdate } from './update.tsx';

const enc = encodeURIComponent;

interface Pending {
  title: string;
  body: ReactNode;
  label: string;
  run: () => Promise<void>;
}

async function deployN(s: ServiceDoc, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await api.post(`/api/service/${enc(s.microserviceID)}/instance`);
}

async function undeployAll(s: ServiceDoc, numbers = liveInstances(s).map((i) => i.instance_number)): Promise<void> {
  for (const n of numbers) await api.del(`/api/service/${enc(s.microserviceID)}/instance/${n}`);
}

/** Scales to `count` like `oak service scale`: adds instances, or removes the highest numbers first. */
async function scaleTo(s: ServiceDoc, count: number): Promise<void> {
  const live = liveInstances(s);
  if (count > live.length) await deployN(s, count - live.length);
  else if (count < live.length) {
    const drop = live
      .map((i) => i.instance_number)
      .sort((a, b) => b - a)
      .slice(0, live.length - count);
    await undeployAll(s, drop);
  }
}

function Addr({ label, v }: { label: string; v: string | null | undefined }) {
  if (v === null || v === undefined || v === '') return null;
  return (
    <span className="addr">
      {label} <code>{v}</code>{' '}
    </span>
  );
}

function InstanceHistory({ s, n }: { s: ServiceDoc; n: number }) {
  const [hist, setHist] = useState<InstanceDoc['history']>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    api.get<InstanceDoc>(`/api/service/${enc(s.microserviceID)}/instance/${n}`).then((d) => setHist(d.history ?? []), setError);
  }, [s.microserviceID, n, s.instance_list]);
  if (error !== undefined) return <ErrorBox error={error} />;
  if (hist === undefined) return <p aria-busy="true">Loading…</p>;
  return (
    <ol className="history" aria-label={`state history of instance ${n}`}>
      {hist.map((h, i) => (
        <li key={i}>
          <time dateTime={h.at}>{new Date(h.at).toLocaleString()}</time> <span className={`state state-${h.status}`}>{h.status}</span> {h.status_detail !== '' && <span className="muted">{h.status_detail}</span>}
        </li>
      ))}
    </ol>
  );
}

/** where an instance runs: cluster and worker by name, their ids as secondary text (and tooltip) */
function Placement({ i, names }: { i: InstanceDoc; names: Names }) {
  if (i.cluster_id === null) return <span className="muted">not placed</span>;
  const cluster = i.cluster_name ?? names.clusters.get(i.cluster_id);
  const worker = i.worker_id === null ? undefined : names.workers.get(i.worker_id);
  return (
    <>
      <span className="placement-cluster" title={`cluster id ${i.cluster_id}`}>
        {cluster ?? <span className="mono">{i.cluster_id}</span>}
      </span>
      {i.worker_id !== null && (
        <div className="placement-worker" title={`worker id ${i.worker_id}`}>
          on {worker ?? <span className="mono">{i.worker_id}</span>}
        </div>
      )}
      {(cluster !== undefined || worker !== undefined) && (
        <div className="muted mono ids">
          {i.cluster_id}
          {i.worker_id !== null && ` / ${i.worker_id}`}
        </div>
      )}
    </>
  );
}

function Instances({ s, ask }: { s: ServiceDoc; ask: (p: Pending) => void }) {
  const [open, setOpen] = useState<number>();
  const list = liveInstances(s);
  const names = usePlacementNames(list);
  if (list.length === 0) return <p className="muted">No instances. Deploy or scale up to start some.</p>;
  return (
    <div className="table-wrap">
      <table className="stack">
        <caption className="muted">Instances of {s.microservice_name} (live)</caption>
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">State</th>
            <th scope="col">Placement</th>
            <th scope="col">Addresses</th>
            <th scope="col">Health</th>
            <th scope="col">Restarts</th>
            <th scope="col">Version</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {list.map((i) => (
            <Fragment key={i.instance_number}>
              <tr data-instance={i.instance_number}>
                <td data-label="#">{i.instance_number}</td>
                <td data-label="State">
                  <span className={`state state-${i.status}`} data-state={i.status}>
                    {i.status}
                  </span>
                  {i.status_detail !== '' && <div className="muted">{i.status_detail}</div>}
                </td>
                <td data-label="Placement">
                  <Placement i={i} names={names} />
                </td>
                <td data-label="Addresses">
                  <Addr label="public" v={i.publicip} />
                  <Addr label="instance" v={i.instance_ip} />
                  <Addr label="v6" v={i.instance_ip_v6} />
                  <Addr label="ns" v={i.nsip} />
                </td>
                <td data-label="Health">{i.health ?? '—'}</td>
                <td data-label="Restarts">{i.restarts ?? 0}</td>
                <td data-label="Version">{i.service_version ?? '—'}</td>
                <td className="row-actions" data-label="Actions">
                  <Link to={`/services/${enc(s.microserviceID)}/instances/${i.instance_number}/logs`}>Logs</Link>{' '}
                  <Link to={`/services/${enc(s.microserviceID)}/instances/${i.instance_number}/metrics`} aria-label={`Readings (CPU and memory) of instance ${i.instance_number}`}>Readings</Link>{' '}
                  <button type="button" aria-expanded={open === i.instance_number} onClick={() => setOpen(open === i.instance_number ? undefined : i.instance_number)}>
                    History
                  </button>{' '}
                  <button
                    type="button"
                    onClick={() =>
                      ask({
                        title: `Undeploy instance ${i.instance_number} of ${s.job_name}?`,
                        body: <p>The instance is stopped and removed from its worker.</p>,
                        label: 'Undeploy',
                        run: () => undeployAll(s, [i.instance_number]),
                      })
                    }
                  >
                    Undeploy
                  </button>
                </td>
              </tr>
              {open === i.instance_number && (
                <tr>
                  <td colSpan={8}>
                    <InstanceHistory s={s} n={i.instance_number} />
                  </td>
                </tr>
              )}
            </Fragment>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Versions({ s, onError }: { s: ServiceDoc; onError: (e: unknown) => void }) {
  const [versions, setVersions] = useState<ServiceVersionDoc[]>();
  const [to, setTo] = useState<string>('');
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    api.get<ServiceVersionDoc[]>(`/api/service/${enc(s.microserviceID)}/history`).then(setVersions, onError);
  }, [s.microserviceID, s.version, onError]);
  if (versions === undefined) return null;
  const older = versions.filter((v) => !v.current);
  return (
    <details>
      <summary>Versions ({versions.length}, current {s.version ?? '?'})</summary>
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">When</th>
              <th scope="col">By</th>
              <th scope="col">Change</th>
              <th scope="col">Outcome</th>
            </tr>
          </thead>
          <tbody>
            {versions.map((v) => (
              <tr key={v.version}>
                <td>
                  {v.version}
                  {v.current ? ' (current)' : ''}
                </td>
                <td>{new Date(v.created_at).toLocaleString()}</td>
                <td>{v.created_by_name ?? 'the root'}</td>
                <td>{v.reason}</td>
                <td>{v.outcome ?? 'rolling'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {older.length > 0 && (
        <form
          className="toolbar"
          onSubmit={(e) => {
            e.preventDefault();
            setBusy(true);
            api
              .post(`/api/service/${enc(s.microserviceID)}/rollback`, to === '' ? {} : { to: Number(to) })
              .catch(onError)
              .finally(() => setBusy(false));
          }}
        >
          <label className="inline">
            Roll back to
            <select value={to} onChange={(e) => setTo(e.target.value)}>
              <option value="">the last complete version</option>
              {older.map((v) => (
                <option key={v.version} value={String(v.version)}>
                  version {v.version} ({v.reason})
                </option>
              ))}
            </select>
          </label>
          <button type="submit" disabled={busy}>
            Roll back
          </button>
        </form>
      )}
    </details>
  );
}

function Service({ s, ask }: { s: ServiceDoc; ask: (p: Pending) => void }) {
  const live = liveInstances(s);
  const [count, setCount] = useState(String(Math.max(live.length, 1)));
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const [editing, setEditing] = useState(false);
  const act = (f: () => Promise<void>): void => {
    setBusy(true);
    setError(undefined);
    f()
      .catch(setError)
      .finally(() => setBusy(false));
  };
  const countId = `scale-${s.microserviceID}`;
  return (
    <article className="card" aria-labelledby={`svc-${s.microserviceID}`} data-service={s.microservice_name}>
      <h2 id={`svc-${s.microserviceID}`}>
        {s.microservice_name} <small className="mono">{s.job_name}</small>
      </h2>
      <p>
        {s.virtualization} <code>{s.code}</code> · {s.memory} MB · {s.vcpus} vCPU · version {s.version ?? '—'} · {live.length} instance{live.length === 1 ? '' : 's'}
        <br />
        <Addr label="service IP" v={s.service_ip} />
        <Addr label="closest" v={s.closest_ip} />
        <Addr label="v6" v={s.service_ip_v6} />
      </p>
      <div className="toolbar">
        <form
          className="toolbar"
          onSubmit={(e) => {
            e.preventDefault();
            const n = Number(count);
            if (!Number.isInteger(n) || n < 0 || n > 1000) {
              setError(new Error('the count is a whole number from 0 to 1000'));
              return;
            }
            act(() => scaleTo(s, n));
          }}
        >
          <label className="inline" htmlFor={countId}>
            Instances
          </label>
          <input id={countId} type="number" min={0} max={1000} step={1} value={count} onChange={(e) => setCount(e.target.value)} inputMode="numeric" />
          <button type="submit" disabled={busy}>
            Scale
          </button>
        </form>
        <button type="button" aria-expanded={editing} onClick={() => setEditing(!editing)}>
          Update
        </button>
        <button
          type="button"
          disabled={live.length === 0}
          onClick={() =>
            ask({ title: `Undeploy every instance of ${s.job_name}?`, body: <p>{live.length} instance(s) stop; the service stays.</p>, label: 'Undeploy all', run: () => undeployAll(s) })
          }
        >
          Undeploy
        </button>
        <button
          type="button"
          className="danger"
          onClick={() =>
            ask({
              title: `Delete service ${s.job_name}?`,
              body: <p>Its instances are undeployed and its SLA history is deleted.</p>,
              label: 'Delete service',
              run: async () => {
                await api.del(`/api/service/${enc(s.microserviceID)}`);
              },
            })
          }
        >
          Delete
        </button>
      </div>
      <ErrorBox error={error} />
      {editing && <ServiceUpdate s={s} onDone={() => setEditing(false)} />}
      <Instances s={s} ask={ask} />
      <Versions s={s} onError={setError} />
    </article>
  );
}

export default function ApplicationDetail({ params }: ViewProps) {
  const id = params['id'] ?? '';
  const { apps, services, error, gone } = useApplications(id);
  const [pending, setPending] = useState<Pending>();
  const [actionError, setActionError] = useState<unknown>();
  const app = apps?.[0];
  const list = services[id] ?? [];
  if (gone) {
    return (
      <section>
        <h1>Application not found</h1>
        <p>
          It was deleted, or it is not of your organisation. <Link to="/applications">All applications</Link>
        </p>
      </section>
    );
  }
  if (app === undefined) return error !== undefined ? <ErrorBox error={error} /> : <p aria-busy="true">Loading…</p>;
  const idle = list.filter((s) => liveInstances(s).length === 0);
  const running = list.reduce((n, s) => n + liveInstances(s).length, 0);
  return (
    <section aria-labelledby="app-title">
      <p>
        <Link to="/applications">← Applications</Link>
      </p>
      <h1 id="app-title">
        {app.application_name} <small>{app.application_namespace}</small>
      </h1>
      {app.application_desc !== '' && <p>{app.application_desc}</p>}
      <div className="toolbar">
        <button
          type="button"
          className="primary"
          disabled={idle.length === 0}
          onClick={() => {
            setActionError(undefined);
            void Promise.all(idle.map((s) => deployN(s, s.replicas ?? 1))).catch(setActionError);
          }}
        >
          Deploy
        </button>
        <button
          type="button"
          disabled={running === 0}
          onClick={() =>
            setPending({
              title: `Undeploy ${app.application_name}?`,
              body: <p>All {running} instance(s) stop; the application and its services stay.</p>,
              label: 'Undeploy all',
              run: async () => {
                await Promise.all(list.map((s) => undeployAll(s)));
              },
            })
          }
        >
          Undeploy
        </button>
        <button
          type="button"
          className="danger"
          onClick={() =>
            setPending({
              title: `Delete ${app.application_name}?`,
              body: (
                <p>
                  The application, its {list.length} service(s) and their instances are deleted. This cannot be undone.
                </p>
              ),
              label: 'Delete application',
              run: async () => {
                await api.del(`/api/application/${enc(app.applicationID)}`);
                navigate('/applications');
              },
            })
          }
        >
          Delete
        </button>
      </div>
      <ErrorBox error={actionError ?? error} />
      {list.map((s) => (
        <Service key={s.microserviceID} s={s} ask={setPending} />
      ))}
      {pending !== undefined && (
        <Confirm title={pending.title} confirmLabel={pending.label} onConfirm={pending.run} onClose={() => setPending(undefined)}>
          {pending.body}
        </Confirm>
      )}
    </section>
  );
}
