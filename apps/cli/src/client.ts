/**
 * The root REST API (SPEC §3) as the CLI uses it. Every answer that is not 2xx becomes the
 * contracts' typed OakError (OakError.parse of the server's error body); a root that does not
 * answer becomes one UnreachableError. An expired access token is refreshed once with the stored
 * refresh token, and the new pair is saved.
 */
import type { ApplicationDoc, ClusterDoc, InstanceDoc, OakError, ServiceDoc, ServiceVersionDoc, TokenPair } from '@oak/contracts';
import type { Agent } from 'undici';
import { pinnedHostTlsOptions, ROOT_SERVICE_NAME } from '@oak/trust/tls';
import { configPath, loadConfig, saveConfig, type OakConfig } from './config.ts';
import { CliError, UnreachableError } from './errors.ts';

export interface RequestOptions {
  body?: unknown;
  /** a body of bytes (an artifact upload), sent as `contentType` instead of JSON */
  bytes?: Uint8Array;
  contentType?: string;
  /** send the bearer token (default true) */
  auth?: boolean;
  /** give up after this long (default 30 s); 0 = never (streams) */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** the caller reads the body itself (streams) */
  raw?: boolean;
}

const SYSCALL_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'unknown host',
  EAI_AGAIN: 'unknown host',
  ETIMEDOUT: 'timed out',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  UND_ERR_SOCKET: 'connection closed',
  CERT_HAS_EXPIRED: 'TLS certificate expired',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed TLS certificate',
  SELF_SIGNED_CERT_IN_CHAIN: 'TLS certificate from an unknown CA',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'TLS certificate from an unknown CA',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'TLS certificate from an unknown CA',
  ERR_TLS_CERT_ALTNAME_INVALID: 'TLS certificate for another name',
};

/** Why fetch failed, in a few words (`connection refused`). */
export function networkReason(err: unknown): string {
  const seen = new Set<unknown>();
  let e: unknown = err;
  while (e !== undefined && e !== null && !seen.has(e)) {
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && SYSCALL_REASONS[code] !== undefined) return SYSCALL_REASONS[code];
    if (e instanceof AggregateError && e.errors.length > 0) {
      e = e.errors[0];
      continue;
    }
    if (e instanceof Error && e.name === 'TimeoutError') return 'no answer in time';
    e = (e as { cause?: unknown }).cause;
  }
  const last = err instanceof Error && err.cause instanceof Error ? err.cause.message : err instanceof Error ? err.message : String(err);
  return last;
}

const API_TO_CLI: [RegExp, string][] = [
  [/GET \/api\/applications\/?/g, "'oak app ls'"],
  [/GET \/api\/application\/\{id\}/g, "'oak app show'"],
  [/PUT \/api\/application\/\{id\}/g, "'oak app update <app> -f <file>'"],
  [/DELETE \/api\/application\/\{id\}/g, "'oak app delete <app>'"],
  [/GET \/api\/service\/\{id\}\/history/g, "'oak service history <service>'"],
  [/POST \/api\/service\/\{id\}\/rollback/g, "'oak service rollback <service>'"],
  [/GET \/api\/(services|service|instances|instance)s?\/?(\{appId\})?/g, "'oak service ls'"],
  [/PUT \/api\/service\/\{id\}/g, "'oak service update <service> -f <file>'"],
  [/DELETE \/api\/service\/\{id\}\/instance\/\{n\}/g, "'oak service undeploy <service>'"],
  [/POST \/api\/service\/\{id\}\/instance/g, "'oak service deploy <service>'"],
  [/GET \/api\/clusters\/?/g, "'oak cluster ls'"],
  [/POST \/api\/application\/?/g, "'oak app create'"],
  [/GET \/api\/events/g, "'oak events'"],
];

/** The root's hints name API routes; a CLI user wants the command that does it. */
export function cliHint(hint: string): string {
  let h = hint;
  for (const [re, cmd] of API_TO_CLI) h = h.replace(re, cmd);
  return h;
}

function hintFor(e: OakError, cfgPath: string): string | undefined {
  switch (e.code) {
    case 'OAK_UNAUTHORIZED':
      return `log in with 'oak login' (the token is kept in ${cfgPath})`;
    case 'OAK_TOKEN_EXPIRED':
      return "your session has expired: log in again with 'oak login'";
    case 'OAK_INVALID_CREDENTIALS':
      return 'check the user name and password (the first Admin password is OAK_ADMIN_PASSWORD of the root, or printed at its first start)';
    default:
      return e.hint === undefined ? undefined : cliHint(e.hint);
  }
}

export class Api {
  readonly root: string;
  private config: OakConfig;
  private readonly cfgPath: string;
  private readonly envToken: string | undefined;
  #caPem: string | undefined;
  #dispatcher: Agent | undefined;

  constructor(root: string, opts: { config?: OakConfig; configPath?: string; env?: NodeJS.ProcessEnv; caPem?: string } = {}) {
    this.root = root;
    if (opts.caPem !== undefined) this.caPem = opts.caPem;
    this.cfgPath = opts.configPath ?? configPath(opts.env);
    this.config = opts.config ?? loadConfig(this.cfgPath);
    const t = (opts.env ?? process.env).OAK_TOKEN;
    this.envToken = t !== undefined && t !== '' ? t : undefined;
  }

  get token(): string | undefined {
    return this.envToken ?? this.config.token;
  }

  /** the CA this client trusts alone for an https root (undefined: the system's CAs) */
  get caPem(): string | undefined {
    return this.#caPem;
  }

  set caPem(pem: string | undefined) {
    void this.#dispatcher?.close();
    this.#dispatcher = undefined;
    this.#caPem = pem;
  }

  /** verified against the pinned CA only; the certificate must name the host dialled or oak-root */
  async #pinnedDispatcher(): Promise<Agent | undefined> {
    if (this.#caPem === undefined || !this.root.startsWith('https:')) return undefined;
    if (this.#dispatcher === undefined) {
      const { Agent } = await import('undici');
      this.#dispatcher = new Agent({ connect: pinnedHostTlsOptions(this.#caPem, ROOT_SERVICE_NAME) });
    }
    return this.#dispatcher;
  }

  url(path: string): string {
    return this.root + path;
  }

  private async send(method: string, path: string, opts: RequestOptions): Promise<Response> {
    const headers: Record<string, string> = { accept: opts.raw === true ? '*/*' : 'application/json' };
    const token = this.token;
    if (opts.auth !== false && token !== undefined) headers.authorization = `Bearer ${token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    if (opts.bytes !== undefined) headers['content-type'] = opts.contentType ?? 'application/octet-stream';
    const signals: AbortSignal[] = [];
    const timeout = opts.timeoutMs ?? 30_000;
    if (timeout > 0) signals.push(AbortSignal.timeout(timeout));
    if (opts.signal) signals.push(opts.signal);
    try {
      const init: RequestInit & { dispatcher?: Agent } = {
        method,
        headers,
        body: opts.bytes !== undefined ? opts.bytes : opts.body === undefined ? null : JSON.stringify(opts.body),
        ...(signals.length > 0 ? { signal: signals.length === 1 ? signals[0] : AbortSignal.any(signals) } : {}),
      };
      const dispatcher = await this.#pinnedDispatcher();
      if (dispatcher !== undefined) init.dispatcher = dispatcher;
      return await fetch(this.url(path), init);
    } catch (err) {
      if (opts.signal?.aborted === true) throw err;
      throw new UnreachableError(this.root, networkReason(err), { cause: err });
    }
  }

  private async failure(res: Response, method: string, path: string): Promise<Error> {
    const text = await res.text().catch(() => '');
    let body: unknown;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      body = undefined;
    }
    const { OakError } = await import('@oak/contracts');
    const looksLikeOak = typeof body === 'object' && body !== null && 'error' in body;
    if (!looksLikeOak) {
      return new CliError(`the root at ${this.root} answered ${method} ${path} with HTTP ${res.status}, not an oak API error`, {
        hint: `is ${this.root} really an oak root? check it with 'oak config show' and 'oak doctor'`,
      });
    }
    const e = OakError.parse(body, res.status);
    const hint = hintFor(e, this.cfgPath);
    const opts: ConstructorParameters<typeof OakError>[2] = {};
    if (e.path !== undefined) opts.path = e.path;
    if (hint !== undefined) opts.hint = hint;
    if (e.details !== undefined) opts.details = e.details;
    return new OakError(e.code, e.message, opts);
  }

  private async refresh(): Promise<boolean> {
    const rt = this.config.refresh_token;
    if (this.envToken !== undefined || rt === undefined) return false;
    const res = await this.send('POST', '/api/auth/refresh', { auth: false, body: { refresh_token: rt } });
    if (!res.ok) {
      await res.body?.cancel();
      return false;
    }
    const pair = (await res.json()) as TokenPair;
    const fresh = loadConfig(this.cfgPath);
    fresh.token = pair.token;
    fresh.refresh_token = pair.refresh_token;
    saveConfig(fresh, this.cfgPath);
    this.config = fresh;
    return true;
  }

  /** One call; the answer's Response (for streams) or throws the typed error. */
  async response(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    let res = await this.send(method, path, opts);
    if (res.status === 401 && opts.auth !== false) {
      const text = await res.clone().text();
      if (text.includes('OAK_TOKEN_EXPIRED') && (await this.refresh())) res = await this.send(method, path, opts);
    }
    if (!res.ok) throw await this.failure(res, method, path);
    return res;
  }

  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.response(method, path, opts);
    const text = await res.text();
    if (text === '') return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CliError(`the root at ${this.root} answered ${method} ${path} with something that is not JSON`, { hint: `is ${this.root} really an oak root?` });
    }
  }

  // ---- the API, by name

  login(username: string, password: string): Promise<TokenPair> {
    return this.request<TokenPair>('POST', '/api/auth/login', { auth: false, body: { username, password } });
  }

  applications(): Promise<ApplicationDoc[]> {
    return this.request<ApplicationDoc[]>('GET', '/api/applications/');
  }

  application(id: string): Promise<ApplicationDoc> {
    return this.request<ApplicationDoc>('GET', `/api/application/${encodeURIComponent(id)}`);
  }

  async createApplications(sla: unknown, deploy: boolean): Promise<{ apps: ApplicationDoc[]; warnings: string[] }> {
    const res = await this.response('POST', `/api/application/${deploy ? '?deploy=true' : ''}`, { body: sla });
    const apps = (await res.json()) as ApplicationDoc[] | ApplicationDoc;
    return { apps: Array.isArray(apps) ? apps : [apps], warnings: warningsOf(res) };
  }

  updateApplication(id: string, patch: unknown): Promise<ApplicationDoc> {
    return this.request<ApplicationDoc>('PUT', `/api/application/${encodeURIComponent(id)}`, { body: patch });
  }

  deleteApplication(id: string): Promise<{ deleted: string }> {
    return this.request<{ deleted: string }>('DELETE', `/api/application/${encodeURIComponent(id)}`);
  }

  services(appId: string): Promise<ServiceDoc[]> {
    return this.request<ServiceDoc[]>('GET', `/api/services/${encodeURIComponent(appId)}`);
  }

  service(id: string): Promise<ServiceDoc> {
    return this.request<ServiceDoc>('GET', `/api/service/${encodeURIComponent(id)}`);
  }

  updateService(id: string, fields: unknown): Promise<ServiceDoc> {
    return this.request<ServiceDoc>('PUT', `/api/service/${encodeURIComponent(id)}`, { body: fields });
  }

  /** the versions of a service's SLA, oldest first */
  serviceHistory(id: string): Promise<ServiceVersionDoc[]> {
    return this.request<ServiceVersionDoc[]>('GET', `/api/service/${encodeURIComponent(id)}/history`);
  }

  /** stores an earlier version's SLA as a new version (`to` absent: the root picks) */
  rollbackService(id: string, to?: number): Promise<ServiceDoc> {
    return this.request<ServiceDoc>('POST', `/api/service/${encodeURIComponent(id)}/rollback`, { body: to === undefined ? {} : { to } });
  }

  deployInstance(serviceId: string): Promise<InstanceDoc> {
    return this.request<InstanceDoc>('POST', `/api/service/${encodeURIComponent(serviceId)}/instance`);
  }

  undeployInstance(serviceId: string, n: number): Promise<InstanceDoc> {
    return this.request<InstanceDoc>('DELETE', `/api/service/${encodeURIComponent(serviceId)}/instance/${n}`);
  }

  clusters(): Promise<ClusterDoc[]> {
    return this.request<ClusterDoc[]>('GET', '/api/clusters/');
  }

  cluster(idOrName: string): Promise<ClusterDoc> {
    return this.request<ClusterDoc>('GET', `/api/cluster/${encodeURIComponent(idOrName)}`);
  }

  /** Every service the caller can see, with its instances. */
  async allServices(): Promise<ServiceDoc[]> {
    const apps = await this.applications();
    const lists = await Promise.all(apps.map((a) => this.services(a.applicationID)));
    return lists.flat();
  }
}

/** The root lists unknown SLA fields it kept in the `oak-warnings` header (a JSON list of strings). */
function warningsOf(res: Response): string[] {
  const h = res.headers.get('oak-warnings');
  if (h === null) return [];
  try {
    const v: unknown = JSON.parse(h);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}
