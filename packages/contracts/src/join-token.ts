/**
 * Join tokens (docs/security.md): `oak1.<kind>.<id>.<secret>.<ca sha256>`. Kind `c` joins a
 * cluster to the root, kind `w` a worker to its cluster. The id names the token (listing,
 * revoking), the secret is what the root stores hashed, and the CA fingerprint (SHA-256 of the
 * root CA's DER, lower-case hex) lets the joining side verify the server on first contact.
 * Pure: formatting and parsing only.
 */
import { OakError } from './errors.ts';

export type JoinTokenKind = 'cluster' | 'worker';

export interface JoinToken {
  kind: JoinTokenKind;
  /** 8 characters [a-z0-9] */
  id: string;
  /** 32+ characters base64url */
  secret: string;
  /** SHA-256 of the CA certificate (DER), 64 lower-case hex digits */
  caHash: string;
}

const KIND_LETTER: Record<JoinTokenKind, string> = { cluster: 'c', worker: 'w' };
const TOKEN_RE = /^oak1\.([cw])\.([a-z0-9]{8})\.([A-Za-z0-9_-]{32,128})\.([0-9a-f]{64})$/;
export const JOIN_TOKEN_ID_PATTERN = '^[a-z0-9]{8}$';

export function formatJoinToken(t: JoinToken): string {
  return `oak1.${KIND_LETTER[t.kind]}.${t.id}.${t.secret}.${t.caHash}`;
}

/** The token, or undefined when the text is not one. */
export function tryParseJoinToken(text: string): JoinToken | undefined {
  const m = TOKEN_RE.exec(text.trim());
  if (!m || m[1] === undefined || m[2] === undefined || m[3] === undefined || m[4] === undefined) return undefined;
  return { kind: m[1] === 'c' ? 'cluster' : 'worker', id: m[2], secret: m[3], caHash: m[4] };
}

/** Parses a join token; `expected` checks its kind. Throws OakError('OAK_VALIDATION') with a hint. */
export function parseJoinToken(text: string, expected?: JoinTokenKind): JoinToken {
  const t = tryParseJoinToken(text);
  if (!t) {
    throw new OakError('OAK_VALIDATION', 'this is not an oak join token', {
      hint: 'a join token looks like oak1.w.<id>.<secret>.<ca hash>; create one with `oak token create worker --cluster <name>` (or `cluster --name <name>`)',
    });
  }
  if (expected !== undefined && t.kind !== expected) {
    throw new OakError('OAK_VALIDATION', `this is a ${t.kind} join token, not a ${expected} one`, {
      hint: `create one with \`oak token create ${expected}${expected === 'worker' ? ' --cluster <name>' : ' --name <name>'}\``,
    });
  }
  return t;
}
