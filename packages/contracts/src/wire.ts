/**
 * Validation of what arrives on the wire: HTTP registration, MQTT payloads, root link messages.
 * Each schema is compiled once; a valid payload costs one compiled check. An invalid one throws
 * OakError('OAK_VALIDATION') naming the first problem (path, message, hint) with all problems
 * in `details`.
 */
import type { Static, TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { OakError, type FieldIssue } from './errors.ts';
import { schemaIssues } from './issues.ts';
import { ClusterToRoot, InstanceAssignment, LINK_SERVICE_PATH, RootToCluster } from './link.ts';
import { DeleteCommand, DeployCommand, JobResources, JobStatus, NodeInformation, NodeRegistration, NodeRegistrationAnswer } from './protocol.ts';

/** At most this many issues ride on a payload error. */
const MAX_DETAILS = 20;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Parses JSON from a buffer or a string. Throws OakError('OAK_MALFORMED_JSON') for an empty body,
 * bytes that are not UTF-8, or text that is not JSON.
 */
export function decodeJson(buf: Uint8Array | string): unknown {
  let text: string;
  if (typeof buf === 'string') text = buf;
  else {
    try {
      text = utf8.decode(buf);
    } catch (cause) {
      throw new OakError('OAK_MALFORMED_JSON', 'the payload is not UTF-8 text', { hint: 'send JSON encoded as UTF-8', cause });
    }
  }
  if (text.trim() === '') throw new OakError('OAK_MALFORMED_JSON', 'the payload is empty', { hint: 'send a JSON document' });
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new OakError('OAK_MALFORMED_JSON', `the payload is not valid JSON: ${detail}`, {
      hint: 'check quotes, commas and brackets (a JSON linter shows where)',
      cause,
    });
  }
}

/** All issues of a value against a schema ([] when it is valid). */
export type IssueFinder = (input: unknown, basePath?: string) => FieldIssue[];

/** A parse function for one payload kind: returns the input typed, or throws OAK_VALIDATION. */
export type Parser<T> = ((input: unknown) => T) & { readonly schema: TSchema; readonly issues: IssueFinder };

/** Compiles `schema` once and returns its parse function; `what` names the payload in messages. */
export function makeParser<S extends TSchema>(schema: S, what: string): Parser<Static<S>> {
  const check = TypeCompiler.Compile(schema);
  const issues: IssueFinder = (input, basePath = '') => (check.Check(input) ? [] : schemaIssues(basePath, check.Errors(input)));
  const parse = (input: unknown): Static<S> => {
    if (check.Check(input)) return input;
    const all = issues(input);
    const first = all[0] ?? { path: '', message: 'does not match the expected form' };
    const more = all.length > 1 ? ` (and ${all.length - 1} more)` : '';
    const where = first.path === '' ? '' : `${first.path}: `;
    throw new OakError('OAK_VALIDATION', `invalid ${what}: ${where}${first.message}${more}`, {
      path: first.path,
      hint: first.hint ?? `send a ${what} as described in the contracts package`,
      details: all.slice(0, MAX_DETAILS),
    });
  };
  return Object.assign(parse, { schema, issues });
}

export const parseNodeRegistration = makeParser(NodeRegistration, 'node registration');
export const parseNodeRegistrationAnswer = makeParser(NodeRegistrationAnswer, 'node registration answer');
export const parseNodeInformation = makeParser(NodeInformation, 'node information message');
export const parseJobStatus = makeParser(JobStatus, 'job status message');
export const parseJobResources = makeParser(JobResources, 'job resources message');
export const parseDeployCommand = makeParser(DeployCommand, 'deploy command');
export const parseDeleteCommand = makeParser(DeleteCommand, 'delete command');
export const parseInstanceAssignment = makeParser(InstanceAssignment, 'instance assignment');
export const parseClusterToRoot = makeParser(ClusterToRoot, 'cluster-to-root link message');
export const parseRootToCluster = makeParser(RootToCluster, 'root-to-cluster link message');

/** A link message that could not be decoded: fails validation instead of breaking the stream. */
export const LINK_MALFORMED = { type: '__malformed__' } as const;

/** Wire form of a link message: a JSON document in UTF-8. */
export function encodeLinkMessage(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v), 'utf8');
}

export function decodeLinkMessage(b: Buffer): unknown {
  try {
    return decodeJson(b);
  } catch {
    return LINK_MALFORMED;
  }
}

/**
 * The link's one gRPC method (bidirectional stream of JSON messages), shaped as @grpc/grpc-js's
 * method definition so the root's server and any test stand-in register the same thing.
 */
export const LINK_CONNECT_METHOD = {
  path: LINK_SERVICE_PATH,
  requestStream: true,
  responseStream: true,
  requestSerialize: encodeLinkMessage,
  requestDeserialize: decodeLinkMessage,
  responseSerialize: encodeLinkMessage,
  responseDeserialize: decodeLinkMessage,
  originalName: 'Connect',
} as const;
