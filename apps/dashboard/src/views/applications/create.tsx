/** Create applications from an SLA v2.0, written, pasted or uploaded, checked as it is typed. */
import { useCallback, useState } from 'react';
import { validateSla, type ApplicationDoc, type FieldIssue } from '@oak/contracts';
import type { ViewProps } from '../registry.ts';
import { api, ApiError, session } from '../../lib/api.ts';
import { navigate } from '../../lib/router.tsx';
import { ErrorBox } from '../../components/error-box.tsx';
import { SlaEditor, type Checked } from '../../components/sla-editor.tsx';

/** A small valid SLA to start from (customerID: the logged-in user). */
export function exampleSla(customer: string): string {
  return JSON.stringify(
  {
    sla_version: 'v2.0',
    customerID: customer,
    applications: [
      {
        application_name: 'hello',
        application_namespace: 'native',
        application_desc: 'a native process printing a line every 2 seconds',
        microservices: [
          {
            microservice_name: 'ticker',
            microservice_namespace: 'native',
            virtualization: 'process',
            code: '/bin/sh',
            cmd: ['-c', 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 2; done'],
            memory: 16,
            vcpus: 0.1,
          },
        ],
      },
    ],
  },
  null,
  2,
  );
}

function check(doc: unknown): { errors: FieldIssue[]; warnings: FieldIssue[] } {
  const r = validateSla(doc);
  return r.ok ? { errors: [], warnings: r.warnings } : { errors: r.errors, warnings: r.warnings };
}

export default function CreateApplication(_props: ViewProps) {
  const example = exampleSla(session.get()?.user.name ?? 'Admin');
  const [text, setText] = useState(example);
  const [checked, setChecked] = useState<Checked>({ errors: [], warnings: [] });
  const [deploy, setDeploy] = useState(true);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [serverIssues, setServerIssues] = useState<FieldIssue[]>();
  const onChecked = useCallback((c: Checked) => setChecked(c), []);

  const submit = async (): Promise<void> => {
    if (checked.value === undefined) return;
    setBusy(true);
    setError(undefined);
    setServerIssues(undefined);
    try {
      const made = await api.post<ApplicationDoc[]>(`/api/application/${deploy ? '?deploy=true' : ''}`, checked.value);
      const first = made[0];
      navigate(first === undefined ? '/applications' : `/applications/${encodeURIComponent(first.applicationID)}`);
    } catch (err) {
      setError(err);
      if (err instanceof ApiError && Array.isArray(err.details)) setServerIssues(err.details as FieldIssue[]);
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="create-title">
      <h1 id="create-title">New application</h1>
      <p className="muted">
        Write, paste or upload an SLA (v2.0, docs/sla.md). It is checked as you type by the same validator as <code>oak validate</code> and the root.
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        <SlaEditor label="SLA (JSON)" text={text} onText={setText} check={check} onChecked={onChecked} {...(serverIssues ? { serverIssues } : {})} />
        <label className="inline">
          <input type="checkbox" checked={deploy} onChange={(e) => setDeploy(e.target.checked)} /> Deploy right away (replicas of every service, default 1)
        </label>
        <ErrorBox error={error} title="The root refused the SLA" />
        <div className="toolbar">
          <button type="submit" className="primary" disabled={busy || checked.value === undefined}>
            {deploy ? 'Create and deploy' : 'Create'}
          </button>
          <button type="button" onClick={() => setText(example)}>
            Reset to the example
          </button>
          <button type="button" onClick={() => navigate('/applications')}>
            Cancel
          </button>
        </div>
      </form>
    </section>
  );
}
