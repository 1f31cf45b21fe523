/**
 * The error catalogue. Every failure kind has a stable code, an HTTP status, a message a user
 * understands and, where it helps, a JSON path and a hint. On the wire:
 * `{ "error": { "code", "message", "path"?, "hint"?, "details"? } }`.
 */
export const ERROR_CODES = {
  OAK_BAD_REQUEST: 400,
  OAK_MALFORMED_JSON: 400,
  OAK_UNSUPPORTED_MEDIA_TYPE: 415,
  OAK_BODY_TOO_LARGE: 413,
  OAK_UNAUTHORIZED: 401,
  OAK_TOKEN_EXPIRED: 401,
  OAK_INVALID_CREDENTIALS: 401,
  OAK_FORBIDDEN: 403,
  OAK_NOT_FOUND: 404,
  OAK_CONFLICT: 409,
  /** a requested overlay address (addresses.rr_ip / rr_ip_v6) belongs to another service or instance */
  OAK_ADDRESS_CONFLICT: 409,
  OAK_INVALID_SLA: 422,
  OAK_VALIDATION: 422,
  OAK_JOIN_TOKEN_INVALID: 401,
  OAK_NOT_ALLOWED: 403,
  OAK_LIMIT_EXCEEDED: 422,
  OAK_RATE_LIMITED: 429,
  OAK_TOO_MANY_STREAMS: 429,
  /** the logs of an ended instance are no longer kept (expired, dropped for room, or never kept) */
  OAK_LOGS_GONE: 410,
  OAK_UNAVAILABLE: 503,
  OAK_INTERNAL: 500,
} as const;
export type ErrorCode = keyof typeof ERROR_CODES;

/** One problem in a submitted document. */
export interface FieldIssue {
  /** JSON path such as `applications[0].microservices[1].port` */
  path: string;
  message: string;
  hint?: string;
}

export interface ErrorBody {
  error: {
    code: ErrorCode;
    message: string;
    path?: string;
    hint?: string;
    details?: FieldIssue[];
  };
}

export interface OakErrorOptions extends ErrorOptions {
  path?: string;
  hint?: string;
  details?: FieldIssue[];
}

export class OakError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly path?: string;
  readonly hint?: string;
  readonly details?: FieldIssue[];

  constructor(code: ErrorCode, message: string, opts: OakErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = ERROR_CODES[code];
    if (opts.path !== undefined) this.path = opts.path;
    if (opts.hint !== undefined) this.hint = opts.hint;
    if (opts.details !== undefined) this.details = opts.details;
  }

  toJSON(): ErrorBody {
    const e: ErrorBody['error'] = { code: this.code, message: this.message };
    if (this.path !== undefined) e.path = this.path;
    if (this.hint !== undefined) e.hint = this.hint;
    if (this.details !== undefined) e.details = this.details;
    return { error: e };
  }

  /** Turns an error body received from the wire back into a typed error. */
  static parse(body: unknown, fallbackStatus = 500): OakError {
    const e = (body as ErrorBody | undefined)?.error;
    if (e && typeof e.code === 'string' && typeof e.message === 'string') {
      const code = (e.code in ERROR_CODES ? e.code : 'OAK_INTERNAL') as ErrorCode;
      const opts: OakErrorOptions = {};
      if (e.path !== undefined) opts.path = e.path;
      if (e.hint !== undefined) opts.hint = e.hint;
      if (e.details !== undefined) opts.details = e.details;
      return new OakError(code, e.message, opts);
    }
    return new OakError(fallbackStatus === 404 ? 'OAK_NOT_FOUND' : 'OAK_INTERNAL', `unexpected answer (${fallbackStatus})`);
  }
}

export class InvalidSlaError extends OakError {
  constructor(details: FieldIssue[]) {
    const first = details[0];
    super('OAK_INVALID_SLA', `the SLA has ${details.length} problem${details.length === 1 ? '' : 's'}${first ? `; first: ${first.path}: ${first.message}` : ''}`, {
      ...(first?.path !== undefined ? { path: first.path } : {}),
      ...(first?.hint !== undefined ? { hint: first.hint } : {}),
      details,
    });
  }
}

const NOT_FOUND_HINTS: Record<string, string> = {
  application: 'list them with GET /api/applications/',
  service: "list an application's services with GET /api/services/{applicationID}",
  instance: 'see instance_list in GET /api/service/{microserviceID}',
  user: 'list them with GET /api/users/',
  organization: 'list them with GET /api/organizations/',
  cluster: 'list them with GET /api/clusters/',
};

export class NotFoundError extends OakError {
  constructor(kind: string, id: string, hint: string | undefined = NOT_FOUND_HINTS[kind]) {
    super('OAK_NOT_FOUND', `${kind} ${JSON.stringify(id)} does not exist`, hint === undefined ? {} : { hint });
  }
}

export class ConflictError extends OakError {
  constructor(message: string, hint?: string) {
    super('OAK_CONFLICT', message, hint === undefined ? {} : { hint });
  }
}

export class ForbiddenError extends OakError {
  constructor(message = 'your role or organisation does not allow this') {
    super('OAK_FORBIDDEN', message);
  }
}

export class UnauthorizedError extends OakError {
  constructor(message = 'a valid bearer token is required', code: 'OAK_UNAUTHORIZED' | 'OAK_TOKEN_EXPIRED' | 'OAK_INVALID_CREDENTIALS' = 'OAK_UNAUTHORIZED') {
    super(code, message, { hint: 'log in with POST /api/auth/login and send Authorization: Bearer <token>' });
  }
}
