/**
 * First start: organisation `root` and user `Admin` (role Admin). Its password comes from
 * OAK_ADMIN_PASSWORD, else one is generated and announced once (the hash is all that is kept, so
 * a second start has nothing to print). The JWT secret lives in the store, so every replica of the
 * root and every restart agree on it.
 */
import { randomBytes } from 'node:crypto';
import { ConflictError } from '@oak/contracts';
import type { OrganizationRow, Store, UserRow } from '@oak/store';
import { checkPassword, generatePassword, hashPassword } from './auth/passwords.ts';

export const ROOT_ORGANIZATION = 'root';
export const ADMIN_USER = 'Admin';
export const JWT_SECRET_SETTING = 'jwt_secret';

export interface BootstrapResult {
  admin: UserRow;
  organization: OrganizationRow;
  /** the generated password, only when this start created the Admin without OAK_ADMIN_PASSWORD */
  generatedPassword?: string;
  created: boolean;
}

async function ensureOrganization(store: Store, name: string): Promise<OrganizationRow> {
  const found = await store.getOrganizationByName(name);
  if (found) return found;
  try {
    return await store.createOrganization(name);
  } catch (err) {
    // another replica created it at the same moment
    const again = err instanceof ConflictError ? await store.getOrganizationByName(name) : undefined;
    if (again) return again;
    throw err;
  }
}

export async function bootstrapAdmin(store: Store, adminPassword?: string): Promise<BootstrapResult> {
  const organization = await ensureOrganization(store, ROOT_ORGANIZATION);
  const existing = await store.getUserByName(ADMIN_USER);
  if (existing) return { admin: existing, organization, created: false };
  const password = adminPassword !== undefined && adminPassword !== '' ? adminPassword : generatePassword();
  // refused before anything is created; on later starts the variable is ignored (the hash is kept)
  checkPassword(password, 'Admin password (OAK_ADMIN_PASSWORD)', 'OAK_ADMIN_PASSWORD');
  try {
    const admin = await store.createUser({ name: ADMIN_USER, password_hash: await hashPassword(password), roles: ['Admin'], organization_id: organization.id, email: null });
    return { admin, organization, created: true, ...(password !== adminPassword ? { generatedPassword: password } : {}) };
  } catch (err) {
    const again = err instanceof ConflictError ? await store.getUserByName(ADMIN_USER) : undefined;
    if (again) return { admin: again, organization, created: false };
    throw err;
  }
}

export async function jwtSecret(store: Store): Promise<Uint8Array> {
  const stored = await store.setSettingIfAbsent(JWT_SECRET_SETTING, randomBytes(32).toString('base64url'));
  return new Uint8Array(Buffer.from(stored, 'base64url'));
}
