/**
 * Private registries (docs/security.md): an organisation's registry logins are kept in the store
 * as AES-256-GCM ciphertext under the root's registry key, which lives in the store setting
 * `registry_secret_key` like the MQTT key (every replica of the root shares it). The additional
 * data binds a ciphertext to its organisation, host and username, so a row copied elsewhere does
 * not decrypt. The password leaves the root only inside the deploy of an instance whose image is
 * on that host (`registryAuthFor`).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { IMAGE_VIRTUALIZATIONS, imageRegistryHost, type Microservice, type RegistryAuth } from '@oak/contracts';
import type { RegistryCredentialRow, Store } from '@oak/store';

export const REGISTRY_KEY_SETTING = 'registry_secret_key';
const VERSION = 'v1';

const keys = new WeakMap<Store, Promise<Buffer>>();

/** The root's registry key (32 bytes), created once per store and shared by its replicas. */
export function registryKey(store: Store): Promise<Buffer> {
  let k = keys.get(store);
  if (!k) {
    k = store.setSettingIfAbsent(REGISTRY_KEY_SETTING, randomBytes(32).toString('base64url')).then((text) => {
      const key = Buffer.from(text, 'base64url');
      if (key.length !== 32) throw new Error(`store setting ${REGISTRY_KEY_SETTING} is not a 32-byte key`);
      return key;
    });
    k.catch(() => keys.delete(store));
    keys.set(store, k);
  }
  return k;
}

const aad = (organizationId: string, host: string, username: string): Buffer => Buffer.from(`oak-registry\n${organizationId}\n${host}\n${username}`, 'utf8');

/** `v1.<iv>.<ciphertext>.<tag>` (base64url) */
export function sealPassword(key: Buffer, organizationId: string, host: string, username: string, password: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad(organizationId, host, username));
  const ct = Buffer.concat([c.update(password, 'utf8'), c.final()]);
  return [VERSION, iv.toString('base64url'), ct.toString('base64url'), c.getAuthTag().toString('base64url')].join('.');
}

/** The password of a stored row; throws when the ciphertext was changed or belongs to another row. */
export function openPassword(key: Buffer, row: Pick<RegistryCredentialRow, 'organization_id' | 'host' | 'username' | 'secret'>): string {
  const parts = row.secret.split('.');
  if (parts.length !== 4 || parts[0] !== VERSION) throw new Error(`the stored login for ${row.host} is not in a known format`);
  const d = createDecipheriv('aes-256-gcm', key, Buffer.from(parts[1]!, 'base64url'));
  d.setAAD(aad(row.organization_id, row.host, row.username));
  d.setAuthTag(Buffer.from(parts[3]!, 'base64url'));
  return Buffer.concat([d.update(Buffer.from(parts[2]!, 'base64url')), d.final()]).toString('utf8');
}

/**
 * The login to send with a deploy of `sla` for `organizationId`: only for image virtualizations
 * whose image host has a stored login of that organisation; undefined otherwise.
 */
export async function registryAuthFor(store: Store, organizationId: string, sla: Pick<Microservice, 'virtualization' | 'code'>): Promise<RegistryAuth | undefined> {
  if (!IMAGE_VIRTUALIZATIONS.includes(sla.virtualization) || typeof sla.code !== 'string') return undefined;
  const host = imageRegistryHost(sla.code);
  const row = await store.getRegistryCredential(organizationId, host);
  if (!row) return undefined;
  const password = openPassword(await registryKey(store), row);
  return { host, username: row.username, password };
}
