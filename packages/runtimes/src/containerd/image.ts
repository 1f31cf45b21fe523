/**
 * Images: reference normalization, pulling (through `ctr images pull`, which fetches, stores and
 * unpacks into the snapshotter in one step), and reading what a container needs from a pulled
 * image through the gRPC content service: the image config and the chain id of its top layer.
 */
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { arch } from 'node:os';
import { goArchOf } from '@oak/contracts';
import type { ContainerdClient } from './grpc.ts';
import type { ImageConfig } from './spec.ts';
import { startAuthRelay, type RegistryLogin } from './auth-relay.ts';

const INDEX_TYPES = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);

/** `busybox` -> `docker.io/library/busybox:latest`, `host:5000/x` -> `host:5000/x:latest` */
export function normalizeRef(ref: string): string {
  let r = ref.trim();
  const slash = r.indexOf('/');
  const first = slash < 0 ? '' : r.slice(0, slash);
  const hasDomain = first !== '' && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (!hasDomain) r = `docker.io/${slash < 0 ? `library/${r}` : r}`;
  const lastPart = r.slice(r.lastIndexOf('/') + 1);
  if (!lastPart.includes(':') && !lastPart.includes('@')) r = `${r}:latest`;
  return r;
}

/** registry host of a normalized reference */
export function registryHost(ref: string): string {
  return ref.slice(0, ref.indexOf('/'));
}

/** 127.0.0.1, localhost and ::1 registries are plain HTTP, as Docker users expect */
export function isPlainHttp(ref: string, extra: string[] = []): boolean {
  const host = registryHost(ref);
  const name = host.replace(/:\d+$/, '');
  return name === '127.0.0.1' || name === 'localhost' || name === '[::1]' || extra.includes(host) || extra.includes(name);
}

export function chainId(diffIds: string[]): string {
  let chain = '';
  for (const d of diffIds) {
    chain = chain === '' ? d : `sha256:${createHash('sha256').update(`${chain} ${d}`).digest('hex')}`;
  }
  return chain;
}

/** this host's architecture as OCI platforms name it (Go's names, the contracts' one table) */
export function goArch(): string {
  return goArchOf(arch());
}

export interface ResolvedImage {
  name: string;
  config: ImageConfig;
  /** snapshot key of the unpacked top layer ('' for an image without layers) */
  chainId: string;
}

interface OciDescriptor { mediaType?: string; digest: string; platform?: { os?: string; architecture?: string } }

/** image config + chain id of an image already in containerd's image store */
export async function resolveImage(client: ContainerdClient, name: string, targetDigest: string, targetType: string): Promise<ResolvedImage> {
  let digest = targetDigest;
  let mediaType = targetType;
  let manifestJson = JSON.parse((await client.readContent(digest)).toString('utf8')) as {
    mediaType?: string; manifests?: OciDescriptor[]; config?: OciDescriptor;
  };
  if (INDEX_TYPES.has(mediaType) || (manifestJson.manifests !== undefined && manifestJson.config === undefined)) {
    const want = goArch();
    const m = (manifestJson.manifests ?? []).find((d) => (d.platform?.os ?? 'linux') === 'linux' && (d.platform?.architecture ?? want) === want);
    if (!m) throw new Error(`image ${name} has no linux/${want} manifest`);
    digest = m.digest;
    mediaType = m.mediaType ?? '';
    manifestJson = JSON.parse((await client.readContent(digest)).toString('utf8')) as typeof manifestJson;
  }
  if (!manifestJson.config) throw new Error(`image ${name}: manifest ${digest} has no config`);
  const cfg = JSON.parse((await client.readContent(manifestJson.config.digest)).toString('utf8')) as {
    config?: ImageConfig; rootfs?: { diff_ids?: string[] };
  };
  return { name, config: cfg.config ?? {}, chainId: chainId(cfg.rootfs?.diff_ids ?? []) };
}

/** `ctr images pull` (fetch + unpack into the default snapshotter) */
export function ctrPull(socket: string, namespace: string, ref: string, plainHttp: boolean, timeoutMs = 300_000, hostsDir?: string): Promise<void> {
  const args = ['-a', socket, '-n', namespace, 'images', 'pull'];
  if (hostsDir !== undefined) args.push('--hosts-dir', hostsDir);
  else if (plainHttp) args.push('--plain-http');
  args.push(ref);
  return new Promise((resolve, reject) => {
    const child = spawn('ctr', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err = (err + d).slice(-4000); });
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => { clearTimeout(t); reject(e); });
    child.on('close', (code) => {
      clearTimeout(t);
      if (code === 0) {
        resolve();
        return;
      }
      const last = err.trim().split('\n').pop() ?? `ctr exited with ${code}`;
      if (hostsDir === undefined && /\b401\b|unauthorized|authorization failed|no basic auth credentials/i.test(err)) {
        const host = registryHost(ref);
        reject(new Error(`registry ${host} needs a login and this organisation has none for it: store one with \`oak registry login ${host}\` (${last})`));
        return;
      }
      reject(new Error(`pulling ${ref} failed: ${last}`));
    });
  });
}

/**
 * `ctr images pull` with a registry login: through an authenticating relay on 127.0.0.1
 * (auth-relay.ts) named as the registry's server in a private hosts dir; the password is in
 * neither the command line nor the hosts file. Everything is gone when this returns.
 */
export async function ctrPullWithLogin(socket: string, namespace: string, ref: string, plainHttp: boolean, login: RegistryLogin, timeoutMs = 300_000): Promise<void> {
  const host = registryHost(ref);
  const relay = await startAuthRelay(`${plainHttp ? 'http' : 'https'}://${host}`, login);
  const dir = await mkdtemp(join(tmpdir(), 'oak-pull-'));
  try {
    // <hosts dir>/<host>/hosts.toml: the relay is the only place to pull and resolve from (the server line too, so
    // nothing falls back to the registry without the login)
    await mkdir(join(dir, host), { mode: 0o700 });
    const toml = [`server = ${JSON.stringify(relay.url)}`, '', `[host.${JSON.stringify(`${relay.url}/v2`)}]`, '  capabilities = ["pull", "resolve"]', '  override_path = true', ''];
    await writeFile(join(dir, host, 'hosts.toml'), toml.join('\n'), { mode: 0o600 });
    await ctrPull(socket, namespace, ref, plainHttp, timeoutMs, dir);
  } catch (err) {
    const why = relay.denied();
    if (why !== undefined) throw new Error(`registry ${host}: ${why}`, { cause: err });
    throw err;
  } finally {
    await relay.close();
    await rm(dir, { recursive: true, force: true });
  }
}
