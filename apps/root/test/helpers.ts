/** Test helpers: a root app on an in-memory SQLite store, users per role and organisation, SLAs. */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import type { ApplicationDoc, OakEvent, Role, TokenPair } from '@oak/contracts';
import { createStore, type InstanceRow, type ServiceRow, type Store } from '@oak/store';
import { buildRootApp, type RootAppOptions } from '../src/app.ts';
import { bootstrapAdmin } from '../src/bootstrap.ts';
import type { RootContext } from '../src/context.ts';
import type { ControlPlane } from '../src/control.ts';
import { EventHub } from '../src/events.ts';
import { hashPassword } from '../src/auth/passwords.ts';

export const ADMIN_PASSWORD = 'admin-secret-1';
export const PASSWORD = 'password-123';

/** A control plane that records what it was told. */
export class RecordingControl implements ControlPlane {
  requested: { service: ServiceRow; instances: InstanceRow[] }[] = [];
  undeployed: { service: ServiceRow; instances: InstanceRow[] }[] = [];
  updated: ServiceRow[] = [];
  instancesRequested(service: ServiceRow, instances: InstanceRow[]): void {
    this.requested.push({ service, instances });
  }
  instancesUndeployed(service: ServiceRow, instances: InstanceRow[]): void {
    this.undeployed.push({ service, instances });
  }
  serviceUpdated(service: ServiceRow): void {
    this.updated.push(service);
  }
}

export interface TestRoot {
  app: FastifyInstance;
  ctx: RootContext;
  store: Store;
  control: RecordingControl;
  events: OakEvent[];
  /** logs in (password PASSWORD unless Admin) and returns the access token */
  login(name: string, password?: string): Promise<string>;
  /** creates a user in `org` (created when missing) with `roles`; returns its token */
  user(name: string, org: string, roles: Role[]): Promise<string>;
  req(method: InjectOptions['method'], url: string, token?: string, body?: unknown): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export async function testRoot(opts: { store?: Store; appOptions?: RootAppOptions; accessTtlSec?: number; control?: ControlPlane } = {}): Promise<TestRoot> {
  const store = opts.store ?? (await createStore({ sqlitePath: ':memory:' }));
  await bootstrapAdmin(store, ADMIN_PASSWORD);
  const control = new RecordingControl();
  const hub = new EventHub();
  const events: OakEvent[] = [];
  hub.subscribe((e) => events.push(e));
  const ctx: RootContext = {
    store,
    events: hub,
    control: opts.control ?? control,
    auth: { jwtSecret: randomBytes(32), accessTtlSec: opts.accessTtlSec ?? 600, refreshTtlSec: 3600 },
  };
  const app = await buildRootApp(ctx, opts.appOptions);
  const req = (method: InjectOptions['method'], url: string, token?: string, body?: unknown) =>
    app.inject({
      method,
      url,
      headers: token ? { authorization: `Bearer ${token}` } : {},
      ...(body !== undefined ? { payload: body as InjectOptions['payload'] } : {}),
    });
  const login = async (name: string, password = name === 'Admin' ? ADMIN_PASSWORD : PASSWORD) => {
    const r = await req('POST', '/api/auth/login', undefined, { username: name, password });
    if (r.statusCode !== 200) throw new Error(`login ${name}: ${r.statusCode} ${r.body}`);
    return (r.json() as TokenPair).token;
  };
  const user = async (name: string, org: string, roles: Role[]) => {
    const o = (await store.getOrganizationByName(org)) ?? (await store.createOrganization(org));
    await store.createUser({ name, password_hash: await hashPassword(PASSWORD), roles, organization_id: o.id, email: null });
    return login(name);
  };
  return {
    app,
    ctx,
    store,
    control,
    events,
    login,
    user,
    req,
    close: async () => {
      await app.close();
      if (!opts.store) await store.close();
    },
  };
}

export function sla(appName = 'clientsrvr', services: string[] = ['server'], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    sla_version: 'v2.0',
    customerID: 'Admin',
    applications: [
      {
        application_name: appName,
        application_namespace: 'test',
        application_desc: 'Simple demo',
        microservices: services.map((s) => ({
          microservice_name: s,
          microservice_namespace: 'test',
          virtualization: 'container',
          code: 'docker.io/library/nginx:latest',
          memory: 100,
          vcpus: 1,
          port: '8080:80/tcp',
          ...extra,
        })),
      },
    ],
  };
}

export async function createApp(t: TestRoot, token: string, name = 'clientsrvr', services: string[] = ['server']): Promise<ApplicationDoc> {
  const r = await t.req('POST', '/api/application/', token, sla(name, services));
  if (r.statusCode !== 200) throw new Error(`create application: ${r.statusCode} ${r.body}`);
  const [doc] = r.json() as ApplicationDoc[];
  if (!doc) throw new Error('no application answered');
  return doc;
}

/** Everything the store holds that the API could change, for "nothing changed" assertions. */
export async function snapshot(store: Store): Promise<string> {
  const strip = <T extends object>(rows: T[]) => rows.map((r) => JSON.stringify(r)).sort();
  const services = await store.listServices();
  const history = await Promise.all(
    (await store.listInstances()).map(async (i) => [i, await store.instanceHistory(i.service_id, i.instance_number)]),
  );
  return JSON.stringify({
    orgs: strip(await store.listOrganizations()),
    users: strip(await store.listUsers()),
    apps: strip(await store.listApplications()),
    services: strip(services),
    instances: strip(history),
    clusters: strip(await store.listClusters()),
  });
}
