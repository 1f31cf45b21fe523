/**
 * Users type names, the API wants ids. An application is found by its id, its name, or
 * `name.namespace`; a service by its id, its job name (`app.appns.svc.svcns`), `app.svc`, or its
 * own name when only one service carries it. Ambiguous names are refused with the candidates.
 */
import type { ApplicationDoc, ServiceDoc } from '@oak/contracts';
import type { Api } from './client.ts';
import { CliError, isServerError } from './errors.ts';

const ID = /^[0-9a-f]{24}$/i;

async function byId<T>(load: () => Promise<T>): Promise<T | undefined> {
  try {
    return await load();
  } catch (err) {
    if (isServerError(err) && (err.code === 'OAK_NOT_FOUND' || err.status === 400)) return undefined;
    throw err;
  }
}

function ambiguous(kind: string, ref: string, names: string[], hint: string): CliError {
  return new CliError(`${JSON.stringify(ref)} names ${names.length} ${kind}s: ${names.join(', ')}`, { hint });
}

export async function resolveApp(api: Api, ref: string): Promise<ApplicationDoc> {
  if (ID.test(ref)) {
    const a = await byId(() => api.application(ref));
    if (a) return a;
  }
  const apps = await api.applications();
  const exact = apps.filter((a) => a.applicationID === ref || `${a.application_name}.${a.application_namespace}` === ref);
  const matches = exact.length > 0 ? exact : apps.filter((a) => a.application_name === ref);
  if (matches.length === 1 && matches[0]) return matches[0];
  if (matches.length > 1) {
    throw ambiguous(
      'application',
      ref,
      matches.map((a) => `${a.application_name}.${a.application_namespace} (${a.applicationID})`),
      'write name.namespace or the id',
    );
  }
  throw new CliError(`no application ${JSON.stringify(ref)}`, { hint: "list them with 'oak app ls'" });
}

export function serviceMatches(s: ServiceDoc, ref: string): boolean {
  return (
    s.microserviceID === ref ||
    s.job_name === ref ||
    `${s.application_name}.${s.microservice_name}` === ref ||
    `${s.application_name}.${s.application_namespace}.${s.microservice_name}` === ref
  );
}

export async function resolveService(api: Api, ref: string): Promise<ServiceDoc> {
  if (ID.test(ref)) {
    const s = await byId(() => api.service(ref));
    if (s) return s;
  }
  const all = await api.allServices();
  const exact = all.filter((s) => serviceMatches(s, ref));
  const matches = exact.length > 0 ? exact : all.filter((s) => s.microservice_name === ref);
  if (matches.length === 1 && matches[0]) return matches[0];
  if (matches.length > 1) {
    throw ambiguous('service', ref, matches.map((s) => s.job_name), "write app.service, the job name or the id (see 'oak service ls')");
  }
  throw new CliError(`no service ${JSON.stringify(ref)}`, { hint: "list them with 'oak service ls'" });
}
