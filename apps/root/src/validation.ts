/**
 * Request validation. Route schemas are TypeBox (one source for validation, types and OpenAPI);
 * this compiler checks them with TypeBox's compiler and answers in our error shape:
 * params/querystring problems are 400 OAK_BAD_REQUEST, body problems 422 OAK_VALIDATION with every
 * issue in `details`. Bodies that are SLA documents are validated in the handler by the SLA
 * validator (422 OAK_INVALID_SLA with path + hint); their schemas carry `x-oak-validate: handler`
 * and only document the shape.
 */
import { OakError, type FieldIssue } from '@oak/contracts';
import { type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import type { FastifySchemaCompiler } from 'fastify';

/** `/applications/0/microservices/1/port` -> `applications[0].microservices[1].port` */
export function pointerToPath(pointer: string): string {
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^\d+$/.test(part)) out += `[${part}]`;
    else out += out === '' ? part : `.${part}`;
  }
  return out;
}

export function schemaIssues(schema: TSchema, value: unknown, prefix = ''): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const seen = new Set<string>();
  for (const e of Value.Errors(schema, value)) {
    const path = prefix + pointerToPath(e.path);
    const key = `${path}\u0000${e.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    issues.push({ path: path === '' ? '(root)' : path, message: e.message });
    if (issues.length >= 50) break;
  }
  return issues;
}

/** Marks a schema as documentation only: the handler validates. */
export function handlerValidated<T extends TSchema>(schema: T): T {
  const copy: Record<string, unknown> = { ...schema, 'x-oak-validate': 'handler' };
  delete copy.$id;
  return copy as unknown as T;
}

/** Marks a body schema as optional: a request without a body (or a JSON null) reaches the handler as undefined. */
export function optionalBody<T extends TSchema>(schema: T): T {
  return { ...schema, 'x-oak-optional-body': true } as unknown as T;
}

/** A whole number as people write it: decimal digits, no sign, no leading zeros, no spaces. */
const CANONICAL_INTEGER = /^(0|[1-9][0-9]{0,14})$/;

/** The integer properties of a params/querystring schema (Integer, optionally inside a Union). */
function integerFields(schema: TSchema): string[] {
  const props = (schema as { properties?: Record<string, TSchema> }).properties ?? {};
  const isInt = (s: TSchema): boolean => (s as { type?: unknown }).type === 'integer' || ((s as { anyOf?: TSchema[] }).anyOf ?? []).some(isInt);
  return Object.entries(props)
    .filter(([, s]) => isInt(s))
    .map(([k]) => k);
}

/**
 * Integer parameters arrive as text; only canonical decimal integers are taken (`1e9`, `0x0`,
 * `-1`, `1.5`, ` 1` are refused with the parameter named instead of being coerced).
 */
function strictIntegers(fields: readonly string[], value: unknown, where: string): OakError | undefined {
  if (fields.length === 0 || typeof value !== 'object' || value === null) return undefined;
  for (const k of fields) {
    const raw = (value as Record<string, unknown>)[k];
    if (raw === undefined || typeof raw === 'number') continue;
    const shown = Array.isArray(raw) ? 'given more than once' : typeof raw === 'string' ? JSON.stringify(raw.length > 40 ? `${raw.slice(0, 40)}...` : raw) : typeof raw;
    if (typeof raw === 'string' && CANONICAL_INTEGER.test(raw)) continue;
    return new OakError('OAK_BAD_REQUEST', `${where} ${k}: ${shown} is not a whole number written in decimal digits`, {
      path: k,
      hint: `write ${k} as digits only, e.g. ${k}=10`,
      details: [{ path: k, message: `${shown} is not a whole number written in decimal digits` }],
    });
  }
  return undefined;
}

export const validatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  if ((schema as Record<string, unknown>)['x-oak-validate'] === 'handler') return () => true;
  // compiled at the route's first request, not when the routes are built: an idle root keeps
  // only the checks of the routes it has answered (each is generated code)
  let compiled: ReturnType<typeof TypeCompiler.Compile> | undefined;
  const isBody = httpPart === 'body';
  const where = httpPart === 'params' ? 'path parameter' : httpPart === 'querystring' ? 'query parameter' : httpPart ?? 'request';
  const ints = isBody ? [] : integerFields(schema);
  const optional = isBody && (schema as Record<string, unknown>)['x-oak-optional-body'] === true;
  return (value: unknown) => {
    if (optional && (value === undefined || value === null)) return { value: undefined };
    const strict = strictIntegers(ints, value, where);
    if (strict) return { error: strict };
    const v = isBody ? value : Value.Convert(schema, value);
    compiled ??= TypeCompiler.Compile(schema);
    if (compiled.Check(v)) return { value: v };
    const issues = schemaIssues(schema, v);
    const first = issues[0];
    const opts = { details: issues, ...(first ? { path: first.path } : {}) };
    const msg = first ? `${where} ${first.path}: ${first.message}` : `invalid ${where}`;
    return { error: isBody ? new OakError('OAK_VALIDATION', msg, opts) : new OakError('OAK_BAD_REQUEST', msg, opts) };
  };
};
