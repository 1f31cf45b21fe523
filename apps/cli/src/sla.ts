/**
 * SLA files: read (JSON, or YAML for `.yaml`/`.yml`; `-` is stdin), then checked with the
 * contracts' validator, the very function the root runs, so that `oak validate` and
 * `oak app create` say offline exactly what the server would answer with a 422.
 */
import { readFileSync } from 'node:fs';
import type { ApplicationDoc, FieldIssue, ServiceDoc } from '@oak/contracts';
import { CliError, formatIssue, ReportedError, UsageError } from './errors.ts';
import { paint, type Ui } from './output.ts';

export interface LoadedDocument {
  /** the name to show: the path, or `stdin` */
  name: string;
  value: unknown;
}

function readText(path: string): string {
  try {
    return readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new UsageError(`cannot read ${path}: ${why}`, { hint: 'give the path of an SLA file, e.g. examples/web-server.json' });
  }
}

/** Line and column of a character offset, for JSON syntax errors. */
function lineCol(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const col = offset - before.lastIndexOf('\n');
  return `line ${line}, column ${col}`;
}

export async function loadDocument(path: string): Promise<LoadedDocument> {
  const name = path === '-' ? 'stdin' : path;
  const text = readText(path);
  if (/\.ya?ml$/i.test(path)) {
    const { parse } = await import('yaml');
    try {
      return { name, value: parse(text) as unknown };
    } catch (err) {
      throw new CliError(`${name} is not valid YAML: ${(err as Error).message.split('\n')[0] ?? ''}`);
    }
  }
  try {
    return { name, value: JSON.parse(text) as unknown };
  } catch (err) {
    const msg = (err as Error).message;
    const pos = /position (\d+)/.exec(msg);
    const where = pos?.[1] !== undefined ? ` at ${lineCol(text, Number(pos[1]))}` : '';
    throw new CliError(`${name} is not valid JSON${where}: ${msg.replace(/ in JSON at position \d+.*$/, '')}`, {
      hint: text.trim() === '' ? 'the file is empty' : 'SLA files are JSON (or YAML when named .yaml / .yml)',
    });
  }
}

/** Prints the validator's findings; errors as `path: message (hint: ...)`. */
export function printIssues(ui: Ui, name: string, errors: FieldIssue[], warnings: FieldIssue[]): void {
  if (errors.length > 0) {
    ui.err(`${paint(ui.errColor, 'red', 'oak:')} ${name}: the SLA has ${errors.length} problem${errors.length === 1 ? '' : 's'}:`);
    for (const e of errors) ui.err(`  ${formatIssue(e)}`);
  }
  for (const w of warnings) ui.err(`${paint(ui.errColor, 'yellow', 'warning:')} ${name}: ${formatIssue(w)}`);
}

/** The failure thrown after printIssues (exit 1, message already printed). */
export class InvalidDocumentError extends ReportedError {}

/** Fields of a ServiceDoc that the root adds; not part of the service's SLA. */
export const SERVICE_DOC_ONLY = ['microserviceID', 'applicationID', 'job_name', 'application_name', 'application_namespace', 'organization_id', 'userId', 'instance_list', 'created_at', 'updated_at', 'service_ip', 'service_ip_v6', 'closest_ip', 'closest_ip_v6', 'version', 'warnings', 'app_name', 'app_ns', 'RR_ip'];

/** A service as its SLA microservice entry (what the root adds left out). */
export function serviceSla(d: ServiceDoc | Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...d };
  for (const k of SERVICE_DOC_ONLY) delete out[k];
  return out;
}

/** An application and its services as an SLA v2.0 document that `oak app create -f` takes back. */
export function applicationSla(a: ApplicationDoc, services: ServiceDoc[], customerID: string): Record<string, unknown> {
  return {
    sla_version: 'v2.0',
    customerID,
    applications: [
      {
        application_name: a.application_name,
        application_namespace: a.application_namespace,
        application_desc: a.application_desc,
        microservices: services.map(serviceSla),
      },
    ],
  };
}
