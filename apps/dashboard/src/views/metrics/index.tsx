/** /services/:id/metrics: live CPU and memory charts of every instance of a service. */
import '../infrastructure/views.css';
import { useEffect, useState } from 'react';
import { api } from '../../lib/api.ts';
import { useEpoch } from '../../lib/events.ts';
import { Link } from '../../lib/router.tsx';
import { ErrorBox } from '../../components/error-box.tsx';
import type { ViewProps } from '../registry.ts';
import { InstanceCharts } from './chart.tsx';

interface ServiceMetrics {
  microserviceID: string;
  job_name: string;
  instances: { instance_number: number }[];
}

export default function ServiceMetricsView({ params }: ViewProps) {
  const id = params.id ?? '';
  const only = params.n === undefined ? undefined : Number(params.n);
  const epoch = useEpoch();
  const [doc, setDoc] = useState<ServiceMetrics>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    const ac = new AbortController();
    api
      .get<ServiceMetrics>(`/api/service/${encodeURIComponent(id)}/metrics`, { signal: ac.signal })
      .then(setDoc, (err: unknown) => {
        if (!ac.signal.aborted) setError(err);
      });
    return () => ac.abort();
  }, [id, epoch]);
  const list = (doc?.instances ?? []).filter((i) => only === undefined || i.instance_number === only);
  return (
    <section aria-labelledby="metrics-title">
      <h1 id="metrics-title">Readings{doc !== undefined ? <> of <span className="mono">{doc.job_name}</span></> : null}</h1>
      <p className="muted">
        CPU in percent of one core and memory in MB, as the workers measure them, live. The root keeps the last readings in memory (about 10 minutes).
      </p>
      <ErrorBox error={error} />
      {doc !== undefined && list.length === 0 && <p>No instance{only !== undefined ? ` ${only}` : ''} of this service is deployed.</p>}
      {list.map((i) => (
        <div className="card" key={i.instance_number}>
          <h2>Instance {i.instance_number}</h2>
          <InstanceCharts serviceId={id} instanceNumber={i.instance_number} />
        </div>
      ))}
      {only !== undefined && <Link to={`/services/${encodeURIComponent(id)}/metrics`}>All instances of this service</Link>}
    </section>
  );
}
