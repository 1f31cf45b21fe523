/**
 * Rolling update of one service: its SLA fields in the editor (what the root adds left out),
 * checked with the root's validateMicroservice as you type, sent with PUT /api/service/{id}; the
 * root rolls the instances over to the new version (follow it in Versions).
 */
import { useCallback, useState } from 'react';
import { validateMicroservice, type FieldIssue, type ServiceDoc } from '@oak/contracts';
import { api, ApiError } from '../../lib/api.ts';
import { ErrorBox } from '../../components/error-box.tsx';
import { SlaEditor, type Checked } from '../../components/sla-editor.tsx';

/** Fields of a ServiceDoc that the root adds; not part of the service's SLA. */
const DOC_ONLY = ['microserviceID', 'applicationID', 'job_name', 'application_name', 'application_namespace', 'organization_id', 'userId', 'instance_list', 'created_at', 'updated_at', 'service_ip', 'service_ip_v6', 'closest_ip', 'closest_ip_v6', 'version', 'warnings'];

export function serviceSla(d: ServiceDoc): Record<string, unknown> {
  const out: Record<string, unknown> = { ...d };
  for (const k of DOC_ONLY) delete out[k];
  return out;
}

function check(doc: unknown): { errors: FieldIssue[]; warnings: FieldIssue[] } {
  const r = validateMicroservice(doc);
  return r.ok ? { errors: [], warnings: r.warnings } : { errors: r.errors, warnings: r.warnings };
}

export function ServiceUpdate({ s, onDone }: { s: ServiceDoc; onDone: () => void }) {
  const [text, setText] = useState(() => JSON.stringify(serviceSla(s), null, 2));
  const [checked, setChecked] = useState<Checked>({ errors: [], warnings: [] });
  const [error, setError] = useState<unknown>();
  const [serverIssues, setServerIssues] = useState<FieldIssue[]>();
  const [busy, setBusy] = useState(false);
  const onChecked = useCallback((c: Checked) => setChecked(c), []);
  const submit = async (): Promise<void> => {
    if (checked.value === undefined) return;
    setBusy(true);
    setError(undefined);
    setServerIssues(undefined);
    try {
      await api.put(`/api/service/${encodeURIComponent(s.microserviceID)}`, checked.value);
      onDone();
    } catch (err) {
      setError(err);
      if (err instanceof ApiError && Array.isArray(err.details)) setServerIssues(err.details as FieldIssue[]);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form
      className="update"
      aria-label={`Update ${s.job_name}`}
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      <SlaEditor label={`SLA of ${s.microservice_name} (JSON)`} text={text} onText={setText} check={check} onChecked={onChecked} rows={14} {...(serverIssues ? { serverIssues } : {})} />
      <ErrorBox error={error} title="The root refused the update" />
      <div className="toolbar">
        <button type="submit" className="primary" disabled={busy || checked.value === undefined}>
          Apply (rolling update)
        </button>
        <button type="button" onClick={onDone}>
          Cancel
        </button>
      </div>
    </form>
  );
}
