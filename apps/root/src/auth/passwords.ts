/** Password hashing (argon2id) and generation. Plaintext never leaves this module's callers. */
import { hash, verify } from '@node-rs/argon2';
import { randomBytes } from 'node:crypto';
import { OakError } from '@oak/contracts';

/** every password: user creation, password change, the first Admin's (OAK_ADMIN_PASSWORD) */
export const MIN_PASSWORD_LENGTH = 8;
export const MAX_PASSWORD_LENGTH = 1024;

/** Throws 422 OAK_VALIDATION naming the rule when `password` breaks it. */
export function checkPassword(password: string, what = 'password', path = 'password'): void {
  if ([...password].length < MIN_PASSWORD_LENGTH) {
    throw new OakError('OAK_VALIDATION', `the ${what} must have at least ${MIN_PASSWORD_LENGTH} characters`, { path, hint: 'choose a longer password' });
  }
  if (password.length > MAX_PASSWORD_LENGTH) {
    throw new OakError('OAK_VALIDATION', `the ${what} must have at most ${MAX_PASSWORD_LENGTH} characters`, { path });
  }
}

export function hashPassword(password: string): Promise<string> {
  return hash(password);
}

/** A hash of nothing anybody knows, verified against when the user does not exist (same timing). */
let dummyHash: Promise<string> | undefined;

/** Computes the dummy hash now, so that the first login of an unknown user is not faster or slower. */
export function warmUp(): Promise<string> {
  return (dummyHash ??= hash(randomBytes(16).toString('hex')));
}

export async function verifyPassword(passwordHash: string | undefined, password: string): Promise<boolean> {
  if (passwordHash === undefined) {
    await verify(await warmUp(), password).catch(() => false);
    return false;
  }
  try {
    return await verify(passwordHash, password);
  } catch {
    return false;
  }
}

/** 20 characters from an unambiguous alphabet (about 115 bits). */
export function generatePassword(length = 20): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const bytes = randomBytes(length * 2);
  let out = '';
  for (let i = 0; i < bytes.length && out.length < length; i++) {
    const b = bytes[i] ?? 0;
    // rejection sampling keeps the distribution uniform
    if (b < 256 - (256 % alphabet.length)) out += alphabet[b % alphabet.length];
  }
  return out.length === length ? out : generatePassword(length);
}
