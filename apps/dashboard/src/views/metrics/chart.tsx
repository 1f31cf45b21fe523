/**
 * Small SVG line charts of one instance's CPU and memory (no chart library: bundle budget). The
 * history comes from GET /api/service/:id/instance/:n/metrics (the root's last readings), new
 * readings from the live metrics stream; at most `max` points are kept.
 */
import '../infrastructure/views.css';
import { useEffect, useState } from 'react';
import type { UsageSample } from '@oak/contracts';
import { api } from '../../lib/api.ts';
import { ErrorBox } from '../../components/error-box.tsx';
import { onMetrics } from '../../lib/events.ts';

const W = 240;
const H = 60;

export interface SparklineProps {
  label: string;
  values: readonly number[];
  /** shown after the last value */
  unit: string;
  /** fixed top of the scale (e.g. 100 for percent); default: the largest value */
  max?: number;
}

/** One series as a polyline, with its last value in text (the chart is a picture; the text says it). */
export function Sparkline({ label, values, unit, max }: SparklineProps) {
  const top = Math.max(max ?? 0, ...values, 1e-9);
  const last = values[values.length - 1];
  const n = values.length;
  const points = values.map((v, i) => `${n === 1 ? W : (i / (n - 1)) * W},${H - (Math.max(0, v) / top) * (H - 2) - 1}`).join(' ');
  const text = last === undefined ? 'no readings yet' : `${fmt(last)} ${unit}`;
  return (
    <figure className="spark">
      <figcaption>
        {label}: <strong>{text}</strong>
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} width={W} height={H} role="img" aria-label={`${label}, last ${n} readings, latest ${text}`} preserveAspectRatio="none">
        <rect x="0" y="0" width={W} height={H} className="spark-bg" />
        {n > 0 && <polyline points={points} className="spark-line" fill="none" />}
      </svg>
    </figure>
  );
}

function fmt(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

export interface InstanceChartsProps {
  serviceId: string;
  instanceNumber: number;
  /** readings kept on screen (default 120: the root's history) */
  max?: number;
}

/** CPU (percent of one core) and memory (MB) of one instance, live. */
export function InstanceCharts({ serviceId, instanceNumber, max = 120 }: InstanceChartsProps) {
  const [samples, setSamples] = useState<UsageSample[]>([]);
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    const ac = new AbortController();
    let live: UsageSample[] = [];
    let loaded = false;
    setSamples([]);
    setError(undefined);
    // readings that arrive before the history is in are kept and merged after it
    const off = onMetrics((e) => {
      if (e.microserviceID !== serviceId) return;
      const r = e.instances.find((i) => i.instance_number === instanceNumber);
      if (r === undefined) return;
      const s: UsageSample = { at: e.at, cpu_percent: r.cpu_percent, memory_mb: r.memory_mb };
      if (!loaded) live.push(s);
      else setSamples((prev) => (prev.length > 0 && (prev[prev.length - 1]?.at ?? 0) >= s.at ? prev : [...prev, s].slice(-max)));
    });
    api
      .get<{ samples: UsageSample[] }>(`/api/service/${encodeURIComponent(serviceId)}/instance/${instanceNumber}/metrics`, { signal: ac.signal })
      .then((r) => {
        const lastAt = r.samples[r.samples.length - 1]?.at ?? 0;
        setSamples([...r.samples, ...live.filter((s) => s.at > lastAt)].slice(-max));
      })
      .catch((err: unknown) => {
        if (!ac.signal.aborted) setError(err);
      })
      .finally(() => {
        loaded = true;
        live = [];
      });
    return () => {
      ac.abort();
      off();
    };
  }, [serviceId, instanceNumber, max]);
  return (
    <div className="charts" aria-live="off">
      <ErrorBox error={error} title="Readings" />
      <Sparkline label="CPU" unit="% of a core" values={samples.map((s) => s.cpu_percent)} />
      <Sparkline label="Memory" unit="MB" values={samples.map((s) => s.memory_mb)} />
    </div>
  );
}
