/** What every benchmark returns; bench/src/main.ts writes it to bench/results/<name>.json. */
export interface BenchRow {
  /** what was measured, e.g. "deploy p50 (ms)" */
  metric: string;
  ours: number;
  /** the baseline measured in the same run (raw ctr run, bare spawn, naive scheduler, ...) */
  baseline: number;
  baseline_name: string;
  /** ours / baseline (lower is better for times, higher for throughputs: see `better`) */
  ratio: number;
  better: 'lower' | 'higher';
  unit: string;
}

export interface BenchResult {
  name: string;
  description: string;
  rows: BenchRow[];
  /** free-form extra numbers */
  extra?: Record<string, unknown>;
}

export type Bench = () => Promise<BenchResult>;

export function row(metric: string, ours: number, baseline: number, baseline_name: string, unit: string, better: 'lower' | 'higher' = 'lower'): BenchRow {
  return { metric, ours, baseline, baseline_name, ratio: baseline === 0 ? 0 : ours / baseline, better, unit };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i] as number;
}
