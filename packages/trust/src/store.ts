/** The CA in a directory: `ca.crt` and `ca.key`, mode 0600 in a 0700 directory. */
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OakError } from '@oak/contracts';
import { checkCa, createCa, type Ca } from './pki.ts';

export const CA_CERT_FILE = 'ca.crt';
export const CA_KEY_FILE = 'ca.key';

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** Writes a file with mode 0600 atomically (temporary file, then rename). */
export async function writePrivateFile(path: string, data: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, data, { mode: 0o600, flag: 'wx' });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

/** Makes `dir` (and parents) and sets it to mode 0700. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

/** Loads the CA kept in `dir`, or creates it there at the first call. */
export async function loadOrCreateCa(dir: string, opts: { commonName?: string } = {}): Promise<Ca> {
  await ensurePrivateDir(dir);
  const certPath = join(dir, CA_CERT_FILE);
  const keyPath = join(dir, CA_KEY_FILE);
  const [hasCert, hasKey] = await Promise.all([exists(certPath), exists(keyPath)]);
  if (hasCert !== hasKey) {
    throw new OakError('OAK_INTERNAL', `${hasCert ? keyPath : certPath} is missing while ${hasCert ? certPath : keyPath} exists`, {
      hint: 'restore the missing file from a backup; deleting both creates a new CA, and every join token then has to be created again',
    });
  }
  if (hasCert) {
    const ca = { certPem: await readFile(certPath, 'utf8'), keyPem: await readFile(keyPath, 'utf8') };
    checkCa(ca);
    await chmod(keyPath, 0o600);
    return ca;
  }
  const ca = await createCa(opts);
  await writePrivateFile(keyPath, ca.keyPem);
  await writePrivateFile(certPath, ca.certPem);
  return ca;
}
