/**
 * Who may do what on the broker (docs/security.md, "Worker identity on MQTT"). One source for both
 * brokers: the embedded aedes checks these functions on every publish and subscribe, and the
 * Mosquitto dynamic-security role of a worker is built from the same rules.
 *
 * | client              | publish       | subscribe                              |
 * |---------------------|---------------|----------------------------------------|
 * | the cluster (admin) | everything    | everything                             |
 * | worker X            | `nodes/X/#`   | `nodes/X/control/#`, `nodes/X/net/#`   |
 */

/** who a connected client is */
export type BrokerPrincipal = { role: 'admin'; name: string } | { role: 'worker'; workerId: string };

/** the topic branches a worker may subscribe to, under nodes/<its id>/ */
export const WORKER_SUBSCRIBE_BRANCHES = ['control', 'net'] as const;

/** a worker id usable as a topic level and a broker user name */
export function isTopicSafeId(id: string): boolean {
  return /^[^/+#\s\u0000$]{1,200}$/.test(id);
}

/** may `p` publish on `topic`? (topics never hold wildcards; the broker checks that) */
export function mayPublish(p: BrokerPrincipal, topic: string): boolean {
  if (p.role === 'admin') return true;
  const prefix = `nodes/${p.workerId}/`;
  return topic.startsWith(prefix) && topic.length > prefix.length;
}

/**
 * may `p` subscribe to `filter`? A worker's filter must stay inside its own control or net
 * branch: the first three levels literal (`nodes`, its id, `control`|`net`), wildcards only below.
 */
export function maySubscribe(p: BrokerPrincipal, filter: string): boolean {
  if (p.role === 'admin') return true;
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
  ];
}

export const CLUSTER_DYNSEC_ACLS: DynsecAcl[] = [
  { acltype: 'publishClientSend', topic: '#', allow: true },
  { acltype: 'publishClientReceive', topic: '#', allow: true },
  { acltype: 'subscribePattern', topic: '#', allow: true },
  { acltype: 'unsubscribePattern', topic: '#', allow: true },
];
