/**
 * Validation of what arrives on the wire: HTTP registration, MQTT payloads, root link messages.
 * Each schema is compiled once; a valid payload costs one compiled check. An invalid one throws
 * OakError('OAK_VALIDATION') naming the first problem (path, message, hint) with all problems
 * in `details`.
 */
import type { Static, TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { OakError, type FieldIssue } from './errors.ts';
import { schemaIssues } from './issues.ts';
import { JSON_LIMITS, LimitExceededError, findLimitViolation, type JsonLimits } from './limits.ts';
import { ClusterToRoot, InstanceAssignment, LINK_SERVICE_PATH, RootToCluster } from './link.ts';
import { WorkerUpgradeCommand } from './fleet.ts';
import {
  InterestRemove, NetInstanceDeploy, NetInstanceUndeploy, NetRegister, NetRegisterAnswer, PeerList, RttReport, ServiceDeployed, ServiceTable,
  ServiceUndeployed, SubnetRequest, SubnetResult, TableQueryRequest, TableQueryResult,
} from './net.ts';
import { DeleteCommand, DeployCommand, JobResources, JobStatus, NodeGone, NodeInformation, NodeRegistration, NodeRegistrationAnswer } from './protocol.ts';

/** At most this many issues ride on a payload error. */
const MAX_DETAILS = 20;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The largest JSON payload decodeJson reads (MQTT messages; larger ones are refused unread). */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** The largest root <-> cluster link message, either way (the gRPC channels use it too). */
export const MAX_LINK_MESSAGE_BYTES = 32 * 1024 * 1024;
/**
 * The largest message the root takes from a cluster (or from a stream that has not said hello):
 * aggregates, statuses and log batches (at most LOG_LIMITS.batchBytes) are far smaller; only
 * root -> cluster syncs need MAX_LINK_MESSAGE_BYTES.
 */
export const MAX_CLUSTER_MESSAGE_BYTES = 8 * 1024 * 1024;

/** Depth only: sizes of fields are each message kind's business (log batches are cut, not refused). */
const MESSAGE_DEPTH: JsonLimits = { ...JSON_LIMITS, arrayItems: Infinity, objectKeys: Infinity, stringLength: Infinity, keyLength: Infinity };

/**
 * Parses JSON from a buffer or a string. Throws OakError('OAK_MALFORMED_JSON') for an empty body,
 * bytes that are not UTF-8, or text that is not JSON, and OakError('OAK_LIMIT_EXCEEDED') for a
 * payload over `maxBytes` (not read) or nested deeper than JSON_LIMITS.depth (before anything
 * recurses into it).
 */
export function decodeJson(buf: Uint8Array | string, maxBytes: number = MAX_MESSAGE_BYTES): unknown {
  const size = typeof buf === 'string' ? buf.length : buf.byteLength;
  if (size > maxBytes) {
    throw new OakError('OAK_LIMIT_EXCEEDED', `the payload is ${size} bytes; at most ${maxBytes} are read (limit max_message_bytes)`, { hint: 'send smaller messages' });
  }
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
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new OakError('OAK_MALFORMED_JSON', `the payload is not valid JSON: ${detail}`, {
      hint: 'check quotes, commas and brackets (a JSON linter shows where)',
      cause,
    });
  }
  const deep = findLimitViolation(value, MESSAGE_DEPTH);
  if (deep !== undefined) throw new LimitExceededError(deep);
  return value;
}

/** All issues of a value against a schema ([] when it is valid). */
export type IssueFinder = (input: unknown, basePath?: string) => FieldIssue[];

/** A parse function for one payload kind: returns the input typed, or throws OAK_VALIDATION. */
export type Parser<T> = ((input: unknown) => T) & { readonly schema: TSchema; readonly issues: IssueFinder };

/**
 * Returns the parse function of `schema`; `what` names the payload in messages. The schema is
 * compiled at the first parse, not at load: a program keeps only the checks of the messages it
 * has seen (each compiled check is generated code; an idle NodeEngine sees few kinds).
 */
export function makeParser<S extends TSchema>(schema: S, what: string): Parser<Static<S>> {
  let compiled: TypeCheck<S> | undefined;
  const checker = (): TypeCheck<S> => (compiled ??= TypeCompiler.Compile(schema));
  const issues: IssueFinder = (input, basePath = '') => {
    const check = checker();
    return check.Check(input) ? [] : schemaIssues(basePath, check.Errors(input));
  };
  const parse = (input: unknown): Static<S> => {
    if (checker().Check(input)) return input;
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
export const parseNodeGone = makeParser(NodeGone, 'node gone message');
export const parseDeployCommand = makeParser(DeployCommand, 'deploy command');
export const parseDeleteCommand = makeParser(DeleteCommand, 'delete command');
export const parseInstanceAssignment = makeParser(InstanceAssignment, 'instance assignment');
export const parseClusterToRoot = makeParser(ClusterToRoot, 'cluster-to-root link message');
export const parseRootToCluster = makeParser(RootToCluster, 'root-to-cluster link message');
export const parseWorkerUpgradeCommand = makeParser(WorkerUpgradeCommand, 'worker upgrade command');
export const parseSubnetRequest = makeParser(SubnetRequest, 'subnet request');
export const parseSubnetResult = makeParser(SubnetResult, 'subnet result');
export const parseTableQueryRequest = makeParser(TableQueryRequest, 'table query request');
export const parseTableQueryResult = makeParser(TableQueryResult, 'table query result');
export const parseServiceTable = makeParser(ServiceTable, 'service table');
export const parseServiceDeployed = makeParser(ServiceDeployed, 'service deployed message');
export const parseServiceUndeployed = makeParser(ServiceUndeployed, 'service undeployed message');
export const parseInterestRemove = makeParser(InterestRemove, 'interest removal');
export const parsePeerList = makeParser(PeerList, 'overlay peer list');
export const parseRttReport = makeParser(RttReport, 'RTT report');
export const parseNetRegister = makeParser(NetRegister, 'NetManager registration');
export const parseNetRegisterAnswer = makeParser(NetRegisterAnswer, 'NetManager registration answer');
export const parseNetInstanceDeploy = makeParser(NetInstanceDeploy, 'NetManager instance deploy');
export const parseNetInstanceUndeploy = makeParser(NetInstanceUndeploy, 'NetManager instance undeploy');

/** A link message that could not be decoded: fails validation instead of breaking the stream. */
export const LINK_MALFORMED = { type: '__malformed__' } as const;
/** A link message over MAX_LINK_MESSAGE_BYTES or too deep: fails validation too (and is not read). */
export const LINK_OVERSIZED = { type: '__oversized__' } as const;

/**
 * Wire form of a link message: a JSON document in UTF-8. Throws LimitExceededError for one over
 * MAX_LINK_MESSAGE_BYTES (the caller's send fails; the peer would refuse it anyway).
 */
export function encodeLinkMessage(v: unknown): Buffer {
  const b = Buffer.from(JSON.stringify(v), 'utf8');
  if (b.byteLength > MAX_LINK_MESSAGE_BYTES) {
    const type = typeof v === 'object' && v !== null ? String((v as { type?: unknown }).type) : typeof v;
    throw new LimitExceededError({ limit: 'max_link_message_bytes', max: MAX_LINK_MESSAGE_BYTES, path: '', message: `the ${type} link message is ${b.byteLength} bytes; at most ${MAX_LINK_MESSAGE_BYTES} are sent (limit max_link_message_bytes)`, hint: 'send less at once' });
  }
  return b;
}

export function decodeLinkMessage(b: Buffer): unknown {
  try {
    const v = decodeJson(b, MAX_LINK_MESSAGE_BYTES);
    // gRPC streams are object streams: a `null` message would end the stream (found by fuzzing)
    return v === null ? LINK_MALFORMED : v;
  } catch (err) {
    return err instanceof OakError && err.code === 'OAK_LIMIT_EXCEEDED' ? LINK_OVERSIZED : LINK_MALFORMED;
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
