/**
 * Probes of the overlay from inside instances: the network namespace the worker made for an
 * instance (read from its state file `<dataDir>/net/<job>.instance.<n>.json`), and `curl` /
 * busybox `nslookup` run in it with nsenter (only the network namespace is entered).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { instanceName } from '@oak/contracts';
import type { InstanceDoc, ServiceDoc } from '@oak/contracts';
import { run, waitFor } from '@oak/testkit';
import assert from 'node:assert/strict';
import type { Api } from './api.ts';
import type { Worker } from './topology.ts';

export const BUSYBOX = '/bin/busybox';

/**
 * a web server replica that answers with its own namespace address (nsip), so a caller knows who
 * answered. It ends on SIGTERM like a well-behaved service (httpd as the container's PID 1 would
 * ignore it, and every undeploy would wait out the runtime's 10 s stop grace).
 */
export function whoamiServer(port = 80): string[] {
  return ['sh', '-c', `trap 'exit 0' TERM; mkdir -p /tmp/w && ip -o -4 addr show dev eth0 | awk '{print $4}' | cut -d/ -f1 > /tmp/w/index.html && { httpd -f -p ${port} -h /tmp/w & wait; }`];
}

interface Attachment { id: string; ip: string; netns: string }

/** every instance namespace the worker holds (its state files) */
export function attachments(w: Worker): Attachment[] {
  const dir = join(w.dataDir, 'net');
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  const out: Attachment[] = [];
  for (const f of files) {
    try {
      const a = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Partial<Attachment>;
      if (typeof a.id === 'string' && typeof a.netns === 'string' && typeof a.ip === 'string') out.push({ id: a.id, ip: a.ip, netns: a.netns });
    } catch {
      // being written
    }
  }
  return out;
}

/** the namespace of instance `n` of `job` on whichever of `workers` runs it */
export function instanceNetns(workers: Worker[], job: string, n: number): string | undefined {
  const id = instanceName(job, n);
  for (const w of workers) {
    const a = attachments(w).find((x) => x.id === id);
    if (a) return a.netns;
  }
  return undefined;
}

export async function waitNetns(workers: Worker[], job: string, n: number): Promise<string> {
  return waitFor(() => instanceNetns(workers, job, n), { timeoutMs: 20_000, message: `network namespace of ${job} instance ${n}` });
}

/**
 * body of `GET url` from inside the namespace, or undefined on any failure. The machine's curl,
 * run with nsenter (the machine's static busybox `wget` applet crashes outside the image: SIGSEGV).
 */
export async function getIn(netns: string, url: string, timeoutS = 2): Promise<string | undefined> {
  const r = await run('nsenter', [`--net=/run/netns/${netns}`, '--', 'curl', '-s', '-g', '--fail', '-m', String(timeoutS), url], { check: false, timeoutMs: (timeoutS + 3) * 1000 });
  return r.code === 0 ? r.stdout.trim() : undefined;
}

/** waits until `url` answers from inside the namespace; returns the body */
export async function waitReach(netns: string, url: string, timeoutMs = 20_000): Promise<string> {
  return waitFor(() => getIn(netns, url), { timeoutMs, intervalMs: 100, message: `${url} from ${netns}` });
}

/** A (or AAAA with `type`) answers for `name` from the resolver at `server`, asked from inside the namespace */
export async function lookupIn(netns: string, name: string, server: string, type: 'A' | 'AAAA' = 'A'): Promise<string[]> {
  const r = await run('nsenter', [`--net=/run/netns/${netns}`, '--', BUSYBOX, 'nslookup', `-type=${type}`, name, server], { check: false, timeoutMs: 10_000 });
  if (r.code !== 0) return [];
  // busybox prints the server first ("Server: x", "Address: x:53"), then "Name: ..." / "Address: ..."
  const after = r.stdout.split(/\nName:/).slice(1).join('\n');
  return [...after.matchAll(/Address:\s*([0-9a-fA-F.:]+)/g)].map((m) => m[1] as string);
}

/** the URL of an address (IPv6 in brackets) */
export function url(ip: string, port = 80, path = '/'): string {
  return `http://${ip.includes(':') ? `[${ip}]` : ip}:${port}${path}`;
}

/** waits until the service shows its virtual addresses and every instance its instance IP and nsip */
export async function waitAddresses(api: Api, svcId: string, count: number): Promise<ServiceDoc> {
  return api.waitInstances(
    svcId,
    (l: InstanceDoc[]) => l.length === count && l.every((i) => i.status === 'RUNNING' && !!i.instance_ip && !!i.nsip),
    60_000,
    `${count} RUNNING instance(s) with instance_ip and nsip`,
  ).then(async (s) => {
    if (!s.service_ip) throw new Error(`service ${s.job_name} shows no service_ip: ${JSON.stringify(s)}`);
    return s;
  });
}

export interface WorkerRow { id: string; name: string; net?: { subnet: string | null; subnet_v6?: string | null; rtt?: { worker_id: string; rtt_ms: number | null }[] } }
export interface ClusterRow { _id: string; cluster_name: string; resources: { workers: number; worker_summary: WorkerRow[] } | null }

export async function workerRows(api: Api): Promise<{ cluster: string; w: WorkerRow }[]> {
  const cs = await api.call<ClusterRow[]>('GET', '/api/clusters/active');
  return cs.flatMap((c) => (c.resources?.worker_summary ?? []).map((w) => ({ cluster: c._id, w })));
}

/** waits until the named workers are listed with an overlay subnet; returns them by name */
export async function overlayWorkers(api: Api, names: string[]): Promise<Map<string, { cluster: string; w: WorkerRow }>> {
  return waitFor(async () => {
    const rows = await workerRows(api);
    const by = new Map(rows.map((r) => [r.w.name, r]));
    return names.every((n) => by.get(n)?.w.net?.subnet) ? by : undefined;
  }, { timeoutMs: 60_000, message: `workers ${names.join(', ')} listed with an overlay subnet` });
}

export async function deploy(api: Api, body: Record<string, unknown>, count: number): Promise<ServiceDoc> {
  const [app] = await api.createApps(body, true);
  assert.ok(app, 'application created');
  const [svc] = await api.services(app.applicationID);
  assert.ok(svc, 'service created');
  return waitAddresses(api, svc.microserviceID, count);
}

export function pinned(node: string): unknown[] {
  return [{ type: 'direct', node }];
}

/** the bridge gateway of a worker subnet: its first host */
export function gatewayOf(subnet: string): string {
  const [net] = subnet.split('/');
  const o = (net as string).split('.').map(Number);
  o[3] = (o[3] as number) + 1;
  return o.join('.');
}

