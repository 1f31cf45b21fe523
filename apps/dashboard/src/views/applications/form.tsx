/**
 * The common fields of a one-service application as a form. It writes the SLA into the editor
 * (the editor stays the one source: what is sent, and what the validator checks, is its text).
 */
import { useState, type FormEvent } from 'react';

export interface CommonFields {
  app: string;
  namespace: string;
  service: string;
  virtualization: 'container' | 'process' | 'unikernel' | 'wasm';
  code: string;
  cmd: string;
  memory: string;
  vcpus: string;
  replicas: string;
  port: string;
}

/** The SLA v2.0 text for the form's fields; numbers that are not numbers stay strings (the validator names them). */
export function slaFromForm(f: CommonFields, customer: string): string {
  const num = (v: string): number | string => (v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : v);
  const ms: Record<string, unknown> = {
    microservice_name: f.service,
    microservice_namespace: f.namespace,
    virtualization: f.virtualization,
    code: f.code,
    memory: num(f.memory),
    vcpus: num(f.vcpus),
  };
  if (f.cmd.trim() !== '') ms['cmd'] = f.virtualization === 'process' ? ['-c', f.cmd] : ['sh', '-c', f.cmd];
  if (f.replicas.trim() !== '') ms['replicas'] = num(f.replicas);
  if (f.port.trim() !== '') ms['port'] = f.port.trim();
  return JSON.stringify({ sla_version: 'v2.0', customerID: customer, applications: [{ application_name: f.app, application_namespace: f.namespace, application_desc: '', microservices: [ms] }] }, null, 2);
}

const INITIAL: CommonFields = { app: '', namespace: 'default', service: 'main', virtualization: 'container', code: '', cmd: '', memory: '64', vcpus: '0.5', replicas: '1', port: '' };

export function CommonForm({ onSla, customer }: { onSla: (text: string) => void; customer: string }) {
  const [f, setF] = useState<CommonFields>(INITIAL);
  const set = <K extends keyof CommonFields>(k: K, v: CommonFields[K]): void => setF((x) => ({ ...x, [k]: v }));
  const submit = (e: FormEvent): void => {
    e.preventDefault();
    onSla(slaFromForm(f, customer));
  };
  const text = (k: Exclude<keyof CommonFields, 'virtualization'>, label: string, extra: Record<string, string> = {}) => (
    <label>
      {label}
      <input value={f[k]} onChange={(e) => set(k, e.target.value)} maxLength={2000} {...extra} />
    </label>
  );
  return (
    <form className="common-form" aria-label="Common fields" onSubmit={submit}>
      <div className="grid">
        {text('app', 'Application name', { placeholder: 'hello' })}
        {text('namespace', 'Namespace')}
        {text('service', 'Service name')}
        <label>
          Virtualization
          <select value={f.virtualization} onChange={(e) => set('virtualization', e.target.value as CommonFields['virtualization'])}>
            <option value="container">container</option>
            <option value="process">process</option>
            <option value="wasm">wasm</option>
            <option value="unikernel">unikernel</option>
          </select>
        </label>
        {text('code', 'Image or program', { placeholder: 'docker.io/library/nginx:1.27 or /bin/sh' })}
        {text('cmd', 'Command (shell)', { placeholder: 'optional' })}
        {text('memory', 'Memory (MB)', { inputMode: 'numeric' })}
        {text('vcpus', 'vCPUs', { inputMode: 'decimal' })}
        {text('replicas', 'Replicas', { inputMode: 'numeric' })}
        {text('port', 'Ports', { placeholder: 'optional, e.g. 9080:80/tcp' })}
      </div>
      <button type="submit">Write the SLA into the editor</button>
    </form>
  );
}
