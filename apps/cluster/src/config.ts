/**
 * Cluster settings: one plain options object for startCluster, and the mapping from flags and
 * environment variables (SPEC §1: SYSTEM_MANAGER_URL, CLUSTER_NAME, CLUSTER_LOCATION, MQTT_URL).
 */
import { DEFAULT_PORTS } from '@oak/contracts';
import type { Strategy } from '@oak/scheduler';
import type { Logger } from '@oak/bus';
import type { NetOptions } from './net.ts';
import type { LinkConnector } from './link-client.ts';

export const CLUSTER_VERSION = '0.1.0';

/** ok: the token is valid for this cluster (tokenId names it for revocation); else why not */
export type WorkerTokenResult = { ok: true; tokenId: string } | { ok: false; reason: string; unavailable?: boolean };
export type WorkerTokenChecker = (token: string, workerId: string) => Promise<WorkerTokenResult>;

export interface ClusterConfig {
  /** CLUSTER_NAME; the root knows the cluster by it */
  name: string;
  /** CLUSTER_LOCATION: free text or lat,long[,radius] */
  location?: string | null;
  /** CLUSTER_ADDONS / --addons: addon labels offered to all workers of the cluster (`addons` constraints) */
  addons?: string[];
  /** HTTP listen address (default 0.0.0.0) */
  host?: string;
  /** HTTP port for worker registration (default 10100; 0 picks a free port) */
  port?: number;
  /**
   * an external broker (e.g. Mosquitto) instead of the embedded one. With credentials
   * (mqtt://admin:password@host:port) of a dynamic-security admin, the cluster provisions one
   * client and role per worker there (docs/security.md); without, the broker's ACLs are yours.
   */
  mqttUrl?: string;
  /**
   * With mqttUrl naming NATS server's MQTT listener (credentials: the cluster's NATS user): the
   * users file its config includes inside `authorization { }`, which the cluster rewrites with
   * one user per worker (and NetManager) and the ACL of docs/security.md; the server's pid file
   * (reloaded with SIGHUP after each change); its monitoring URL, to check its version and
   * JetStream at start and to confirm each reload (docs/operations.md, "Which broker").
   */
  natsAuth?: { file: string; pidFile: string; monitorUrl?: string };
  /** the broker URL handed to workers when it differs from mqttUrl (external broker behind NAT) */
  mqttPublicUrl?: string;
  /** embedded broker port (default 10003; 0 picks a free port) */
  mqttPort?: number;
  /** embedded broker listen address (default: host) */
  mqttHost?: string;
  /**
   * the root's link listener (host:port); without it the cluster runs standalone. `connect`: the
   * root runs in this process (oakd), the link goes through it instead of TLS (LinkClient)
   */
  root?: { address: string; token: string; connect?: LinkConnector };
  /**
   * Checks a worker join token (and records the worker id it is used for). Default: ask the root
   * over the link. Without a root and without this, every registration is refused.
   */
  tokenCheck?: WorkerTokenChecker;
  /**
   * The certificate workers verify (registration over HTTPS, the embedded broker over TLS): PEM
   * chain (leaf first), its key, the CA. Default with a root: the one in the link's welcome.
   * `false` serves plain HTTP and MQTT (tests and trusted networks only).
   */
  tls?: { cert: string; key: string; ca: string } | false;
  /** the key of the workers' MQTT passwords; default with a root: welcome.mqtt_secret, else random */
  mqttSecret?: string;
  /** how often workers report, ms (default 2000) */
  reportIntervalMs?: number;
  /** missed report intervals before a worker is dead (default 3) */
  deadAfterIntervals?: number;
  /** aggregate to the root every this many ms (default 5000) */
  aggregateIntervalMs?: number;
  strategy?: Strategy;
  log?: Logger;
  /** link tuning (tests) */
  linkSilenceTimeoutMs?: number;
  linkMaxBackoffMs?: number;
  /** a non-follow log request that gets no answer from the worker within this time fails (default 10 s) */
  logsTimeoutMs?: number;
  /** overlay network limits and timings (tests) */
  net?: Partial<NetOptions>;
  /** a registration request (headers + body) must arrive within this time, else 408 (default 30 s) */
  requestTimeoutMs?: number;
}

/**
 * The root's link address from SYSTEM_MANAGER_URL. Oakestra gives the root's host there; an
 * http(s) URL names the REST API, whose port is not the link's. The link port is, in order:
 * `linkPort` (OAK_ROOT_LINK_PORT), the port of a `grpc://host:port` or bare `host:port` value
 * (except 10000: that is the root's REST port, Oakestra's SYSTEM_MANAGER_PORT, which Oakestra
 * users write next to the address), else 50052.
 */
export function linkAddress(systemManagerUrl: string, linkPort?: string | number): string {
  const raw = systemManagerUrl.trim();
  if (raw === '') throw new Error('SYSTEM_MANAGER_URL is empty');
  let host: string;
  let port: number | undefined;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(raw)?.[1]?.toLowerCase();
  if (scheme !== undefined) {
    const u = new URL(raw);
    host = u.hostname;
    if (u.port !== '' && scheme !== 'http' && scheme !== 'https') port = Number(u.port);
  } else {
    const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(raw) ?? /^([A-Za-z0-9._-]+)(?::(\d+))?$/.exec(raw);
    if (!m || m[1] === undefined) throw new Error(`SYSTEM_MANAGER_URL ${JSON.stringify(raw)} is not a host, host:port or URL`);
    host = m[1];
    if (m[2] !== undefined && Number(m[2]) !== DEFAULT_PORTS.root) port = Number(m[2]);
  }
  if (linkPort !== undefined && linkPort !== '') {
    const p = Number(linkPort);
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`OAK_ROOT_LINK_PORT must be a port number, not ${JSON.stringify(linkPort)}`);
    port = p;
  }
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `${h}:${port ?? DEFAULT_PORTS.rootLink}`;
}
