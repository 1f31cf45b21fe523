/**
 * The CLI's failure kinds. Each one knows its exit code (0 ok, 1 failure, 2 usage error); the
 * entry point prints them as one or a few lines, never a stack trace. Errors answered by the root
 * arrive as the contracts' OakError (see client.ts) and are recognised by shape, so that the
 * entry point does not have to load the contracts package just to print them.
 */
import type { ErrorCode, FieldIssue } from '@oak/contracts';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface CliErrorOptions extends ErrorOptions {
  hint?: string;
  details?: FieldIssue[];
}

/** Something went wrong that is not the user's typing: exit 1. */
export class CliError extends Error {
  readonly exitCode: number = EXIT_FAILURE;
  readonly hint?: string;
  readonly details?: FieldIssue[];

  constructor(message: string, opts: CliErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    if (opts.hint !== undefined) this.hint = opts.hint;
    if (opts.details !== undefined) this.details = opts.details;
  }
}

/** Wrong command line: unknown flag value, missing file, bad argument. Exit 2. */
export class UsageError extends CliError {
  override readonly exitCode: number = EXIT_USAGE;
}

/** The root did not answer at all (refused, unknown host, timeout). Printed as one line. */
export class UnreachableError extends CliError {
  readonly root: string;
  readonly reason: string;

  constructor(root: string, reason: string, opts: CliErrorOptions = {}) {
    super(`cannot reach the root at ${root} (${reason}); is it running? try 'oak doctor'`, opts);
    this.root = root;
    this.reason = reason;
  }
}

/** A failure whose explanation is already printed: exit 1 without another message. */
export class ReportedError extends CliError {
  readonly printed = true;
}

/** The instances being waited for failed, or the wait timed out. */
export class WaitFailedError extends CliError {}

/** The shape of the contracts' OakError, as far as printing it goes. */
export interface ServerError {
  code: ErrorCode;
  status: number;
  message: string;
  path?: string;
  hint?: string;
  details?: FieldIssue[];
}

export function isServerError(e: unknown): e is ServerError & Error {
  if (!(e instanceof Error)) return false;
  const r = e as Error & Partial<ServerError>;
  return typeof r.code === 'string' && r.code.startsWith('OAK_') && typeof r.status === 'number';
}

/** One issue as a user reads it: `path: message (hint: ...)`. */
export function formatIssue(i: FieldIssue): string {
  const where = i.path === '' ? '(document)' : i.path;
  return `${where}: ${i.message}${i.hint !== undefined && i.hint !== '' ? ` (hint: ${i.hint})` : ''}`;
}
