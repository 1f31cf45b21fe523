/**
 * Private registries (docs/security.md): the registry host of an image reference, the syntax of
 * hosts and logins, and the login the root hands down with a deploy that pulls from that host.
 */
import { Type, type Static } from '@sinclair/typebox';

export const REGISTRY_HOST_MAX = 261;
export const REGISTRY_USERNAME_MAX = 256;
export const REGISTRY_PASSWORD_MAX = 8192;

/**
 * A registry host as image references name it: a DNS name (`registry.example.com`, `localhost`)
 * or an IPv4 address or a bracketed IPv6 address, optionally with `:port`. Lower case.
 */
export const REGISTRY_HOST_PATTERN =
  '^(?:(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\\.(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?))*|\\[[0-9a-f:.]{2,45}\\])(?::[0-9]{1,5})?$';
const HOST_RE = new RegExp(REGISTRY_HOST_PATTERN);

/** Why `host` is not a registry host, or undefined when it is one. */
export function registryHostProblem(host: string): string | undefined {
  if (typeof host !== 'string' || host.length === 0) return 'a registry host is required';
  if (host.length > REGISTRY_HOST_MAX) return `a registry host has at most ${REGISTRY_HOST_MAX} characters`;
  if (!HOST_RE.test(host)) return `${JSON.stringify(host.slice(0, 80))} is not a registry host (write it as in image references: registry.example.com, 127.0.0.1:5000, in lower case, without a scheme or path)`;
  const port = /:([0-9]{1,5})$/.exec(host.startsWith('[') ? host.slice(host.indexOf(']')) : host);
  if (port && (Number(port[1]) < 1 || Number(port[1]) > 65535)) return `port ${port[1]} of ${JSON.stringify(host)} is not a port number`;
  return undefined;
}

/** Why a username / password is not acceptable, or undefined. */
export function registryLoginProblem(username: string, password: string): string | undefined {
  if (typeof username !== 'string' || username.length < 1 || username.length > REGISTRY_USERNAME_MAX) return `username must have 1-${REGISTRY_USERNAME_MAX} characters`;
  // a colon cannot be in a basic-auth user name; control characters have no place in either
  if (username.includes(':')) return 'username must not contain ":"';
  if (/[\u0000-\u001f\u007f]/.test(username)) return 'username must not contain control characters';
  if (typeof password !== 'string' || password.length < 1 || password.length > REGISTRY_PASSWORD_MAX) return `password must have 1-${REGISTRY_PASSWORD_MAX} characters`;
  if (/[\u0000-\u001f\u007f]/.test(password)) return 'password must not contain control characters (a newline at its end is dropped by the CLI)';
  return undefined;
}

/**
 * The registry host an image reference pulls from, as containerd sees it: `busybox` and
 * `user/app` are Docker Hub (`docker.io`), `host:5000/x` and `registry.example.com/x` name their
 * host (a first part with a dot or a colon, or `localhost`). Lower-cased.
 */
export function imageRegistryHost(ref: string): string {
  const r = ref.trim();
  const slash = r.indexOf('/');
  const first = slash < 0 ? '' : r.slice(0, slash);
  const hasDomain = first !== '' && (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('['));
  return hasDomain ? first.toLowerCase() : 'docker.io';
}

/** The virtualizations whose `code` is an OCI image reference pulled from a registry. */
export const IMAGE_VIRTUALIZATIONS: readonly string[] = ['container', 'microvm'];

/**
 * A login for one registry host, sent root -> cluster -> worker only inside the deploy of an
 * instance whose image is on that host. Never logged, never persisted below the root.
 */
export const RegistryAuth = Type.Object(
  {
    host: Type.String({ minLength: 1, maxLength: REGISTRY_HOST_MAX, pattern: REGISTRY_HOST_PATTERN }),
    username: Type.String({ minLength: 1, maxLength: REGISTRY_USERNAME_MAX }),
    password: Type.String({ minLength: 1, maxLength: REGISTRY_PASSWORD_MAX }),
  },
  { additionalProperties: false },
);
export type RegistryAuth = Static<typeof RegistryAuth>;

/** A copy of a deploy command / assignment fit for a log line: the registry password replaced. */
export function redactRegistryAuth<T extends { registry_auth?: RegistryAuth | undefined }>(v: T): T {
  if (v.registry_auth === undefined) return v;
  return { ...v, registry_auth: { ...v.registry_auth, password: '[redacted]' } };
}
