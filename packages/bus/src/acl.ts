/**
 * Who may do what on the broker (docs/security.md, "Worker identity on MQTT"). One source for both
 * brokers: the embedded aedes checks these functions on every publish and subscribe, and the
 * Mosquitto dynamic-security role of a worker is built from the same rules.
 *
 * | client              | publish       | subscribe                                              |
 * |---------------------|---------------|--------------------------------------------------------|
 * | the cluster (admin) | everything    | everything                                             |
 * | worker X            | `nodes/X/#`   | `nodes/X/control/#`, `nodes/X/net/#`,                  |
 * |                     |               | read-only: `net/peers`, `jobs/<job or +>/updates_available` |
 *
 * A last will obeys the publish rule: a worker's NodeEngine sets one on its own `nodes/X/gone`
 * (issue 9); the embedded broker refuses at connect a will outside `nodes/X/#`, Mosquitto drops
 * it when it would be published (publishClientSend).
 *
 * A worker connects twice with the same identity (user name = its id, its password): its NodeEngine
 * with client id `<id>`, its NetManager with client id `<id>-net` (workerOfClient). On Mosquitto a
 * dynamic-security client admits one client id only, so the NetManager there has a client of its
 * own, user name and client id `<id>-net`, the same password and the same role (dynsec.ts); the
 * embedded broker accepts both forms.
 */

/** who a connected client is */
export type BrokerPrincipal = { role: 'admin'; name: string } | { role: 'worker'; workerId: string };

/** the topic branches a worker may subscribe to, under nodes/<its id>/ */
export const WORKER_SUBSCRIBE_BRANCHES = ['control', 'net'] as const;

/** a worker id usable as a topic level and a broker user name */
export function isTopicSafeId(id: string): boolean {
  return /^[^/+#\s\u0000$]{1,200}$/.test(id);
}

/** the suffix of a NetManager's client id (and of its Mosquitto user name) after its worker's id */
export const NETMANAGER_CLIENT_SUFFIX = '-net';

/**
 * The worker a connecting client speaks for, by its client id and user name, before its password
 * is checked (against that worker's): `<id>`/`<id>` (NodeEngine), `<id>-net`/`<id>` and
 * `<id>-net`/`<id>-net` (NetManager). `isWorker(id)` says whether `id` is a worker with
 * credentials (a worker whose own id ends in `-net` keeps it). Anything else: null.
 */
export function workerOfClient(clientId: string, username: string, isWorker: (id: string) => boolean): string | null {
  if (!isTopicSafeId(username)) return null;
  if (clientId === username && isWorker(username)) return username;
  if (clientId === `${username}${NETMANAGER_CLIENT_SUFFIX}` && isWorker(username)) return username;
  if (clientId === username && username.endsWith(NETMANAGER_CLIENT_SUFFIX)) {
    const base = username.slice(0, -NETMANAGER_CLIENT_SUFFIX.length);
    if (base.length > 0 && isWorker(base)) return base;
  }
  return null;
}

/** topics every worker may read (never publish): the overlay's peers and every job's table updates */
export const WORKER_READ_ONLY = ['net/peers', 'jobs/+/updates_available'] as const;

function isWorkerReadOnly(filter: string): boolean {
  if (filter === 'net/peers') return true;
  const parts = filter.split('/');
  // jobs/<one job, or +>/updates_available: never `#`, never a wildcard elsewhere
  return parts.length === 3 && parts[0] === 'jobs' && parts[2] === 'updates_available' && parts[1] !== undefined && parts[1] !== '' && parts[1] !== '#' && (parts[1] === '+' || !/[+#\u0000]/.test(parts[1]));
}

/** may `p` publish on `topic`? (topics never hold wildcards; the broker checks that) */
export function mayPublish(p: BrokerPrincipal, topic: string): boolean {
  if (p.role === 'admin') return true;
  const prefix = `nodes/${p.workerId}/`;
  return topic.startsWith(prefix) && topic.length > prefix.length;
}

/**
 * may `p` subscribe to `filter`? A worker's filter must stay inside its own control or net
 * branch: the first three levels literal (`nodes`, its id, `control`|`net`), wildcards only below;
 * or be one of the read-only overlay topics (WORKER_READ_ONLY).
 */
export function maySubscribe(p: BrokerPrincipal, filter: string): boolean {
  if (p.role === 'admin') return true;
  if (isWorkerReadOnly(filter)) return true;
  const parts = filter.split('/');
  if (parts.length < 3) return false;
  if (parts[0] !== 'nodes' || parts[1] !== p.workerId) return false;
  return (WORKER_SUBSCRIBE_BRANCHES as readonly string[]).includes(parts[2] ?? '');
}

/** the same rules as Mosquitto dynamic-security ACL entries */
export interface DynsecAcl {
  acltype: 'publishClientSend' | 'publishClientReceive' | 'subscribePattern' | 'subscribeLiteral' | 'unsubscribePattern';
  topic: string;
  allow: boolean;
  priority?: number;
}

export function workerDynsecAcls(workerId: string): DynsecAcl[] {
  return [
    { acltype: 'publishClientSend', topic: `nodes/${workerId}/#`, allow: true },
    ...WORKER_SUBSCRIBE_BRANCHES.flatMap((b): DynsecAcl[] => [
      { acltype: 'subscribePattern', topic: `nodes/${workerId}/${b}/#`, allow: true },
      { acltype: 'publishClientReceive', topic: `nodes/${workerId}/${b}/#`, allow: true },
    ]),
    { acltype: 'unsubscribePattern', topic: `nodes/${workerId}/#`, allow: true },
    ...WORKER_READ_ONLY.flatMap((t): DynsecAcl[] => [
      { acltype: 'subscribePattern', topic: t, allow: true },
      { acltype: 'publishClientReceive', topic: t, allow: true },
      { acltype: 'unsubscribePattern', topic: t, allow: true },
    ]),
  ];
}

export const CLUSTER_DYNSEC_ACLS: DynsecAcl[] = [
  { acltype: 'publishClientSend', topic: '#', allow: true },
  { acltype: 'publishClientReceive', topic: '#', allow: true },
  { acltype: 'subscribePattern', topic: '#', allow: true },
  { acltype: 'unsubscribePattern', topic: '#', allow: true },
];
