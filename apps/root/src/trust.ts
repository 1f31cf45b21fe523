/**
 * The root's trust material and join tokens (docs/security.md).
 *
 * - The root CA: in `<data dir>/tls` (ca.crt, ca.key; 0600 in a 0700 dir) for a root on its
 *   SQLite file; in the store setting `root_ca` when the store is shared (PostgreSQL, or a store
 *   handed in by the caller), so that every replica of the root serves and signs with one CA.
 * - The MQTT key: store setting `mqtt_secret_key`; a cluster's MQTT secret is
 *   HMAC-SHA256(key, 'mqtt:' + cluster id), base64url, the same at every connect of that cluster.
 * - Join tokens `oak1.<c|w>.<id>.<secret>.<ca sha256>`: only SHA-256(secret) is stored.
 */
import { createHash, createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { formatJoinToken, tryParseJoinToken, type JoinTokenKind } from '@oak/contracts';
import type { JoinTokenRow, Store } from '@oak/store';
import { caFingerprint, checkCa, createCa, loadOrCreateCa, type Ca } from '@oak/trust';
import type { RootContext } from './context.ts';

export const ROOT_CA_SETTING = 'root_ca';
export const MQTT_KEY_SETTING = 'mqtt_secret_key';

export interface RootTrust {
  ca: Ca;
  /** SHA-256 of the CA's DER, 64 lower-case hex */
  caHash: string;
  mqttKey: Buffer;
}

/** Loads (or creates, once) the root's CA and MQTT key. With `caDir`, the CA lives there; else in the store. */
export async function loadRootTrust(store: Store, opts: { caDir?: string } = {}): Promise<RootTrust> {
  let ca: Ca;
  if (opts.caDir !== undefined) {
    ca = await loadOrCreateCa(opts.caDir);
  } else {
    const existing = await store.getSetting(ROOT_CA_SETTING);
    // concurrent first starts of several replicas: the first insert wins, every one reads it back
    const stored = existing ?? (await store.setSettingIfAbsent(ROOT_CA_SETTING, JSON.stringify(await createCa())));
    const parsed = JSON.parse(stored) as { certPem?: unknown; keyPem?: unknown };
    if (typeof parsed.certPem !== 'string' || typeof parsed.keyPem !== 'string') throw new Error(`store setting ${ROOT_CA_SETTING} is not a CA`);
    ca = { certPem: parsed.certPem, keyPem: parsed.keyPem };
    checkCa(ca);
  }
  const key = await store.setSettingIfAbsent(MQTT_KEY_SETTING, randomBytes(32).toString('base64url'));
  return { ca, caHash: caFingerprint(ca.certPem), mqttKey: Buffer.from(key, 'base64url') };
}

/** The context's trust material, loaded from the store on first use when startRoot did not set it. */
export function rootTrust(ctx: RootContext): Promise<RootTrust> {
  ctx.trust ??= loadRootTrust(ctx.store);
  return ctx.trust;
}

/** The MQTT secret of one cluster (welcome.mqtt_secret). */
export function clusterMqttSecret(trust: RootTrust, clusterId: string): string {
  return createHmac('sha256', trust.mqttKey).update(`mqtt:${clusterId}`, 'utf8').digest('base64url');
}

export const hashSecret = (secret: string): string => createHash('sha256').update(secret, 'utf8').digest('hex');

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
function newTokenId(): string {
  let s = '';
  for (let i = 0; i < 8; i++) s += ID_ALPHABET[randomInt(ID_ALPHABET.length)];
  return s;
}

export interface MintOptions {
  kind: JoinTokenKind;
  /** cluster tokens: bind now (else at first use) */
  name?: string | null;
  /** worker tokens: the cluster */
  cluster?: string | null;
  ttlSec?: number | null;
  createdBy?: string | null;
}

/** Creates a join token; the returned text is the only time the secret exists outside the holder. */
export async function mintJoinToken(store: Store, trust: RootTrust, o: MintOptions): Promise<{ row: JoinTokenRow; token: string }> {
  const secret = randomBytes(24).toString('base64url');
  const expires = o.ttlSec === undefined || o.ttlSec === null ? null : new Date(Date.now() + o.ttlSec * 1000).toISOString();
  for (let attempt = 0; ; attempt++) {
    const id = newTokenId();
    try {
      const row = await store.createJoinToken({
        id,
        kind: o.kind,
        name: o.kind === 'cluster' ? (o.name ?? null) : null,
        cluster: o.kind === 'worker' ? (o.cluster ?? null) : null,
        secret_hash: hashSecret(secret),
        created_by: o.createdBy ?? null,
        expires_at: expires,
      });
      return { row, token: formatJoinToken({ kind: o.kind, id, secret, caHash: trust.caHash }) };
    } catch (err) {
      // an id collision (36^8): try another id
      if (attempt >= 4) throw err;
    }
  }
}

export type TokenState = 'active' | 'expired' | 'revoked';

export function tokenState(row: JoinTokenRow, now = Date.now()): TokenState {
  if (row.revoked_at !== null) return 'revoked';
  if (row.expires_at !== null && Date.parse(row.expires_at) <= now) return 'expired';
  return 'active';
}

export type TokenCheck = { ok: true; row: JoinTokenRow } | { ok: false; reason: string };

/** Checks a join token's text: format, kind, id, secret, revocation, expiry. Constant-time on the secret. */
export async function checkJoinToken(store: Store, text: string, kind: JoinTokenKind): Promise<TokenCheck> {
  const t = tryParseJoinToken(text);
  if (!t) return { ok: false, reason: 'this is not an oak join token (expected oak1.<c|w>.<id>.<secret>.<ca hash>)' };
  if (t.kind !== kind) return { ok: false, reason: `this is a ${t.kind} join token, not a ${kind} token` };
  const row = await store.getJoinToken(t.id);
  const given = Buffer.from(hashSecret(t.secret), 'hex');
  const stored = Buffer.from(row?.secret_hash ?? hashSecret(randomBytes(24).toString('base64url')), 'hex');
  if (!row || row.kind !== kind || given.length !== stored.length || !timingSafeEqual(given, stored)) {
    return { ok: false, reason: 'unknown join token' };
  }
  const state = tokenState(row);
  if (state === 'revoked') return { ok: false, reason: `join token ${row.id} was revoked` };
  if (state === 'expired') return { ok: false, reason: `join token ${row.id} expired at ${row.expires_at}` };
  return { ok: true, row };
}
