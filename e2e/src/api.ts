/** A small client of the root REST API for end-to-end tests (plain fetch, no SDK). */
import type { ApplicationDoc, InstanceDoc, InstanceState, ServiceDoc } from '@oak/contracts';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
    what: string,
  ) {
    super(`${what} -> ${status} ${JSON.stringify(body)}`);
  }
}

export class Api {
  token = '';
  constructor(readonly base: string) {}

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.base + path, { method, headers, body: body === undefined ? null : JSON.stringify(body) });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // plain text answer
    }
    if (!res.ok) throw new ApiError(res.status, parsed, `${method} ${path}`);
    return parsed as T;
  }

  async login(username: string, password: string): Promise<void> {
    const r = await this.call<{ token: string }>('POST', '/api/auth/login', { username, password });
    this.token = r.token;
  }

  async createApps(sla: unknown, deploy = false): Promise<ApplicationDoc[]> {
    const r = await this.call<ApplicationDoc[] | ApplicationDoc>('POST', `/api/application/${deploy ? '?deploy=true' : ''}`, sla);
    return Array.isArray(r) ? r : [r];
  }

  services(appId: string): Promise<ServiceDoc[]> {
    return this.call<ServiceDoc[]>('GET', `/api/services/${appId}`);
  }

  service(id: string): Promise<ServiceDoc> {
    return this.call<ServiceDoc>('GET', `/api/service/${id}`);
  }

  deployInstance(serviceId: string): Promise<InstanceDoc> {
    return this.call<InstanceDoc>('POST', `/api/service/${serviceId}/instance`);
  }

  undeployInstance(serviceId: string, n: number): Promise<unknown> {
    return this.call('DELETE', `/api/service/${serviceId}/instance/${n}`);
  }

  /** polls until every listed instance satisfies `pred`; returns the service */
  async waitInstances(serviceId: string, pred: (list: InstanceDoc[]) => boolean, timeoutMs = 30_000, what = 'instances'): Promise<ServiceDoc> {
    const until = Date.now() + timeoutMs;
    let last: ServiceDoc | undefined;
    while (Date.now() < until) {
      last = await this.service(serviceId);
      if (pred(last.instance_list)) return last;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last?.instance_list)}`);
  }

  waitStatus(serviceId: string, status: InstanceState, count = 1, timeoutMs = 30_000): Promise<ServiceDoc> {
    return this.waitInstances(
      serviceId,
      (l) => l.length === count && l.every((i) => i.status === status),
      timeoutMs,
      `${count} instance(s) ${status}`,
    );
  }
}

/** polls a URL until it answers 2xx */
export async function waitHealthy(url: string, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < until) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
      lastErr = new Error(`status ${r.status}`);
    } catch (e) {
      lastErr = e;
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${url} not healthy after ${timeoutMs} ms: ${String(lastErr)}`);
}
