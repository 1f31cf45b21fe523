/**
 * SLA v2.0 validation (SPEC §2): the TypeBox schemas of sla.ts checked with a compiled checker,
 * plus the rules a schema cannot say (port lists, service IP range, constraint contents,
 * duplicate names). Every problem of a document is reported at once, one issue per field, with a
 * dotted path and a hint. Unknown fields are kept in the result and reported as warnings.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { InvalidSlaError, OakError, type FieldIssue } from './errors.ts';
import { IssueList, childPath, schemaIssues, unknownFieldWarnings } from './issues.ts';
import { LimitExceededError, SLA_JSON_LIMITS, findLimitViolation, type LimitViolation } from './limits.ts';
import { Application, Microservice, NAME_PATTERN, Sla } from './sla.ts';
import { parseAddedFiles, parseVolumeSpecs, storageNotEnforced } from './workload.ts';
import { imageUrlWarning, oakestraFieldWarnings } from './oakestra-fields.ts';
import { isIPv6, locationProblem, parseIPv4, parsePorts } from './values.ts';

/** The SLA version this validator understands. */
export const SLA_VERSION = 'v2.0';

/** A failed validation; `limit` is set when the document is over a size limit (nothing else was checked). */
export interface Failed {
  ok: false;
  errors: FieldIssue[];
  warnings: FieldIssue[];
  limit?: LimitViolation;
}

export type SlaValidation =
  | { ok: true; sla: Sla; warnings: FieldIssue[] }
  | Failed;

export type MicroserviceValidation =
  | { ok: true; microservice: Microservice; warnings: FieldIssue[] }
  | Failed;

/** Which application a POST /api/service/ request adds its services to. */
export interface ServiceTarget {
  applicationID?: string;
  application_name?: string;
  application_namespace?: string;
}

export type ServiceRequestValidation =
  | { ok: true; target: ServiceTarget; microservices: Microservice[]; warnings: FieldIssue[] }
  | Failed;

/** PUT /api/application/{id}: every application field optional; given services are complete. */
export const ApplicationPatch = Type.Partial(Application, { additionalProperties: true });
export type ApplicationPatch = Static<typeof ApplicationPatch>;

export type ApplicationPatchValidation =
  | { ok: true; patch: ApplicationPatch; warnings: FieldIssue[] }
  | Failed;

const Name = Type.String({ pattern: NAME_PATTERN });
/** POST /api/service/ in its SLA shape: one application naming the target, with its new services. */
export const ServiceRequestSla = Type.Object(
  {
    sla_version: Type.Optional(Type.String()),
    customerID: Type.Optional(Type.String()),
    applications: Type.Array(
      Type.Object(
        {
          applicationID: Type.Optional(Type.String({ minLength: 1 })),
          application_name: Type.Optional(Name),
          application_namespace: Type.Optional(Name),
          application_desc: Type.Optional(Type.String()),
          microservices: Type.Array(Microservice, { minItems: 1 }),
        },
        { additionalProperties: true },
      ),
      { minItems: 1, maxItems: 1 },
    ),
  },
  { additionalProperties: true },
);

let compiled: Map<TSchema, TypeCheck<TSchema>> | undefined;
function checker(schema: TSchema): TypeCheck<TSchema> {
  compiled ??= new Map();
  let c = compiled.get(schema);
  if (c === undefined) {
    c = TypeCompiler.Compile(schema);
    compiled.set(schema, c);
  }
  return c;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Adds an issue unless the field (or a field above it) already has one. */
function add(errors: IssueList, issue: FieldIssue): void {
  errors.add(issue);
}

type Issues = IssueList;

/** The failure for a document over a limit: nothing else of it is read. */
function overLimit(value: unknown, base: string): Failed | undefined {
  const v = findLimitViolation(value, SLA_JSON_LIMITS, base);
  if (v === undefined) return undefined;
  return { ok: false, errors: [{ path: v.path, message: v.message, hint: v.hint }], warnings: [], limit: v };
}

/** The error to answer for a failed validation: 422 OAK_LIMIT_EXCEEDED or OAK_INVALID_SLA. */
export function validationError(r: Failed): OakError {
  return r.limit !== undefined ? new LimitExceededError(r.limit) : new InvalidSlaError(r.errors);
}

function structural(schema: TSchema, value: unknown, base: string, errors: Issues): void {
  const c = checker(schema);
  if (!c.Check(value)) schemaIssues(base, c.Errors(value), errors);
}

function notAnObject(path: string, what: string, example: string): FieldIssue {
  return { path, message: `${what} must be a JSON object`, hint: `send an object such as ${example}` };
}

/**
 * `rigidness` and `convergence_time` of a constraint (or con_constraint): what is not acted on
 * is said (rigidness 0 weighs nothing; the convergence_time of a connectivity preference moves
 * nothing: only preferences in `constraints` re-place an instance after it, docs/sla.md).
 */
function checkRigidness(c: Record<string, unknown>, path: string, warnings: Issues, convergenceActedOn: boolean): void {
  const r = c['rigidness'];
  const soft = typeof r === 'number' && r >= 0 && r < 1;
  if (r === 0) {
    warnings.push({ path: childPath(path, 'rigidness'), message: 'rigidness 0 gives this constraint no weight: it changes no placement', hint: 'use 1 for a hard constraint, or a value between 0 and 1 for a preference' });
  }
  if (soft && !convergenceActedOn && typeof c['convergence_time'] === 'number') {
    warnings.push({
      path: childPath(path, 'convergence_time'),
      message: 'convergence_time is not acted on for connectivity: an instance placed where this preference is unmet stays there (it is not moved when a better place appears)',
      hint: 'the preference is scored at every placement; use rigidness 1 to make it a requirement',
    });
  }
}

function checkConstraint(c: Record<string, unknown>, path: string, errors: Issues, warnings: Issues): void {
  checkRigidness(c, path, warnings, true);
  const type = c['type'];
  const location = c['location'];
  const locPath = childPath(path, 'location');
  const checkLoc = (): void => {
    if (typeof location !== 'string') return;
    const problem = locationProblem(location);
    if (problem !== undefined) add(errors, { path: locPath, message: `location ${problem}`, hint: 'write "lat,long" in decimal degrees, e.g. "48.1351,11.5820"' });
  };
  if (type === 'direct') {
    const has = (k: string): boolean => typeof c[k] === 'string' && c[k] !== '';
    if (!has('cluster') && !has('node')) {
      add(errors, { path, message: 'a direct constraint needs "cluster" and/or "node"', hint: 'add "cluster": "<cluster name>" and/or "node": "<worker name>"' });
    }
  } else if (type === 'geo') {
    checkLoc();
  } else if (type === 'latency') {
    if (c['area'] === undefined && location === undefined) {
      add(errors, { path, message: 'a latency constraint needs "area" or "location"', hint: 'add "location": "lat,long" (or "area": "<name>") next to "threshold"' });
    }
    checkLoc();
  }
}

/** The rules of one service that a schema cannot express; run after the structural check. */
function microserviceSemantics(ms: Record<string, unknown>, path: string, errors: Issues, warnings: Issues): void {
  const port = ms['port'];
  if (typeof port === 'string') {
    try {
      parsePorts(port);
    } catch (e) {
      if (!(e instanceof OakError)) throw e;
      add(errors, { path: childPath(path, 'port'), message: e.message, hint: e.hint ?? 'e.g. "8080:80/tcp"' });
    }
  }
  const code = ms['code'];
  const virt = ms['virtualization'];
  if (typeof code === 'string' && (virt === 'container' || virt === 'microvm') && /\s/.test(code)) {
    add(errors, { path: childPath(path, 'code'), message: `code ${JSON.stringify(code)} is not an image reference (it contains spaces)`, hint: 'use registry/repository:tag, e.g. "docker.io/library/nginx:latest"; put arguments in "cmd"' });
  } else if (typeof code === 'string' && code.trim() === '') {
    add(errors, { path: childPath(path, 'code'), message: 'code must not be blank', hint: 'e.g. "code": "docker.io/library/nginx:latest"' });
  }
  const arch = ms['arch'];
  if (typeof code === 'string' && virt === 'unikernel' && code.includes(',')) {
    // one URL per architecture, matched by index (Oakestra's rule)
    const urls = code.split(',').length;
    const n = Array.isArray(arch) ? arch.length : 0;
    if (n !== urls) {
      add(errors, { path: childPath(path, n === 0 ? 'code' : 'arch'), message: `code has ${urls} comma-separated URLs but arch lists ${n} architecture(s); they are matched by index`, hint: 'list one architecture per URL, e.g. "arch": ["amd64", "arm64"]' });
    }
  }
  const addresses = ms['addresses'];
  if (isRecord(addresses)) {
    const ap = childPath(path, 'addresses');
    const rr = addresses['rr_ip'];
    if (typeof rr === 'string') {
      const p = childPath(ap, 'rr_ip');
      // outside the service range: a warning (oakestra-fields.ts), the root picks an address of the range
      if (parseIPv4(rr) === undefined) add(errors, { path: p, message: `rr_ip ${JSON.stringify(rr)} is not an IPv4 address`, hint: 'write four numbers 0-255 joined by dots, inside 10.30.0.0/16, e.g. "10.30.55.55"' });
    }
    const rr6 = addresses['rr_ip_v6'];
    if (typeof rr6 === 'string' && !isIPv6(rr6)) {
      add(errors, { path: childPath(ap, 'rr_ip_v6'), message: `rr_ip_v6 ${JSON.stringify(rr6)} is not an IPv6 address`, hint: 'e.g. "fdff::55", or leave it out' });
    }
  }
  const constraints = ms['constraints'];
  if (Array.isArray(constraints)) {
    constraints.forEach((c, i) => {
      if (isRecord(c)) checkConstraint(c, childPath(childPath(path, 'constraints'), i), errors, warnings);
    });
  }
  checkConnectivity(ms, path, errors, warnings);
  const env = ms['environment'];
  if (Array.isArray(env)) {
    env.forEach((e, i) => {
      if (typeof e === 'string' && !e.includes('=')) {
        warnings.push({ path: childPath(childPath(path, 'environment'), i), message: `environment entry ${JSON.stringify(e)} has no "="`, hint: 'write KEY=value, e.g. "MODE=prod"' });
      }
    });
  }
  workloadSemantics(ms, path, errors, warnings);
  oakestraFieldWarnings(ms, path, warnings);
  imageUrlWarning(ms, path, warnings);
  const update = ms['update'];
  if (isRecord(update)) {
    // the schema checked each field; the rule across them: a rollout must be able to move
    const surge = update['max_surge'] ?? 1;
    const unavailable = update['max_unavailable'] ?? 0;
    if (Number.isInteger(surge) && Number.isInteger(unavailable) && (surge as number) + (unavailable as number) < 1) {
      add(errors, {
        path: childPath(childPath(path, 'update'), 'max_surge'),
        message: `max_surge (${String(surge)}) + max_unavailable (${String(unavailable)}) must be at least 1, or a rolling update could never replace an instance`,
        hint: 'set "max_surge": 1 (start a replacement first) or "max_unavailable": 1 (stop an old instance first)',
      });
    }
  }
  const health = ms['health'];
  if (isRecord(health)) {
    const hp = childPath(path, 'health');
    if ((health['type'] === 'tcp' || health['type'] === 'http') && health['port'] === undefined) {
      add(errors, { path: childPath(hp, 'port'), message: `a ${health['type']} health probe needs a port`, hint: 'add "port": 80 (the container port to probe)' });
    }
    if (health['type'] === 'exec' && (!Array.isArray(health['command']) || health['command'].length === 0)) {
      add(errors, { path: childPath(hp, 'command'), message: 'an exec health probe needs a command', hint: 'add "command": ["/bin/check"]' });
    }
    const hpath = health['path'];
    if (typeof hpath === 'string' && !hpath.startsWith('/')) {
      add(errors, { path: childPath(hp, 'path'), message: `health path ${JSON.stringify(hpath)} must start with "/"`, hint: 'e.g. "/healthz"' });
    }
  }
}

/** `added_files`, `volumes`, `storage`, `privileged`: shapes (errors) and what is not honoured (warnings). */
function workloadSemantics(ms: Record<string, unknown>, path: string, errors: Issues, warnings: Issues): void {
  const virt = typeof ms['virtualization'] === 'string' ? ms['virtualization'] : undefined;
  const files = parseAddedFiles(ms['added_files'], childPath(path, 'added_files'), virt);
  for (const e of files.errors) add(errors, e);
  const vols = parseVolumeSpecs(ms['volumes'], childPath(path, 'volumes'));
  for (const e of vols.errors) add(errors, e);
  for (const w of vols.warnings) warnings.push(w);
  if (vols.items.some((v) => v.kind !== 'csi') && virt !== undefined && virt !== 'container' && virt !== 'microvm') {
    add(errors, { path: childPath(path, 'volumes'), message: `volumes are mounted into containers and microVMs only (this service is a ${virt})`, hint: 'remove "volumes" or run the service as a container or microvm' });
  }
  const storage = ms['storage'];
  if (typeof storage === 'number' && storage > 0 && virt !== undefined) {
    const why = storageNotEnforced(virt);
    if (why !== undefined) warnings.push({ path: childPath(path, 'storage'), message: `storage ${storage} MB is not enforced for ${virt}: ${why}`, hint: 'the value is kept; size the workload\'s disk use yourself' });
  }
  // args reach every virtualization (containers, processes, wasm, unikernels, microVMs)
}

/** `connectivity`: kinds that cannot be enforced are refused, a service may not name itself. */
function checkConnectivity(ms: Record<string, unknown>, path: string, errors: Issues, warnings: Issues): void {
  const list = ms['connectivity'];
  if (!Array.isArray(list)) return;
  const own = [ms['microserviceID'], ms['microservice_name']].filter((x): x is string => typeof x === 'string' && x !== '');
  list.forEach((entry, i) => {
    if (!isRecord(entry)) return;
    const ep = childPath(childPath(path, 'connectivity'), i);
    const target = entry['target_microservice_id'];
    if (typeof target === 'string' && own.includes(target)) {
      add(errors, { path: childPath(ep, 'target_microservice_id'), message: `target_microservice_id ${JSON.stringify(target)} is this service itself`, hint: 'name another service of the application (its microserviceID or microservice_name)' });
    }
    const cons = entry['con_constraints'];
    if (!Array.isArray(cons)) return;
    cons.forEach((cc, j) => {
      if (!isRecord(cc)) return;
      const cp = childPath(childPath(ep, 'con_constraints'), j);
      if (cc['type'] === 'bandwidth') {
        add(errors, {
          path: childPath(cp, 'type'),
          message: 'bandwidth connectivity constraints are refused: nothing here measures the bandwidth between workers, so it could not be kept',
          hint: 'remove this entry, or use { "type": "latency", "threshold": <ms> } (the overlay measures RTTs)',
        });
        return;
      }
      checkRigidness(cc, cp, warnings, false);
    });
  });
}

/**
 * Connectivity targets that name no service of the same list: a warning (the target may be a
 * stored service of the application; until one matches, the rule constrains nothing).
 */
function connectivityTargets(list: unknown[], path: string, warnings: Issues): void {
  const names = new Set<string>();
  for (const ms of list) {
    if (!isRecord(ms)) continue;
    for (const k of ['microserviceID', 'microservice_name']) if (typeof ms[k] === 'string') names.add(ms[k]);
  }
  list.forEach((ms, i) => {
    if (!isRecord(ms) || !Array.isArray(ms['connectivity'])) return;
    ms['connectivity'].forEach((entry: unknown, j) => {
      if (!isRecord(entry)) return;
      const target = entry['target_microservice_id'];
      if (typeof target !== 'string' || names.has(target)) return;
      const cons = entry['con_constraints'];
      if (!Array.isArray(cons) || cons.length === 0) return;
      warnings.push({
        path: childPath(childPath(childPath(childPath(path, i), 'connectivity'), j), 'target_microservice_id'),
        message: `no service of this application here has microserviceID or microservice_name ${JSON.stringify(target)}; the rule constrains nothing until one does`,
        hint: 'name the other service by its microservice_name (or the microserviceID the root gave it)',
      });
    });
  });
}

/** Duplicate microservice names within one list of services. */
function duplicateServices(list: unknown[], path: string, errors: Issues): void {
  const seen = new Map<string, number>();
  list.forEach((ms, i) => {
    if (!isRecord(ms)) return;
    const name = ms['microservice_name'];
    if (typeof name !== 'string') return;
    const before = seen.get(name);
    if (before === undefined) seen.set(name, i);
    else {
      add(errors, {
        path: childPath(childPath(path, i), 'microservice_name'),
        message: `microservice_name ${JSON.stringify(name)} is already used by ${childPath(path, before).split('.').pop() ?? ''}`,
        hint: 'give each service of an application its own microservice_name',
      });
    }
  });
}

/** `wholeApp`: the list holds every service of the application (else targets may be stored ones). */
function servicesSemantics(list: unknown, path: string, errors: Issues, warnings: Issues, wholeApp = true): void {
  if (!Array.isArray(list)) return;
  list.forEach((ms, i) => {
    if (isRecord(ms)) microserviceSemantics(ms, childPath(path, i), errors, warnings);
  });
  duplicateServices(list, path, errors);
  if (wholeApp) connectivityTargets(list, path, warnings);
}

function finish<T extends object>(errors: Issues, warnings: Issues, ok: T): (T & { ok: true; warnings: FieldIssue[] }) | Failed {
  const w = warnings.result('warnings');
  return errors.list.length > 0 ? { ok: false, errors: errors.result('problems'), warnings: w } : { ...ok, ok: true, warnings: w };
}

/**
 * Validates a full SLA (POST /api/application/). On success the SLA is returned as given,
 * unknown fields included (forward compatibility); those are listed in `warnings`.
 */
export function validateSla(input: unknown): SlaValidation {
  const errors = new IssueList();
  const warnings = new IssueList();
  if (!isRecord(input)) {
    return { ok: false, errors: [notAnObject('', 'the SLA', '{ "sla_version": "v2.0", "customerID": "Admin", "applications": [...] }')], warnings: [] };
  }
  const limit = overLimit(input, '');
  if (limit) return limit;
  structural(Sla, input, '', errors);
  const version = input['sla_version'];
  if (typeof version === 'string' && version !== '' && version !== SLA_VERSION) {
    warnings.push({ path: 'sla_version', message: `sla_version ${JSON.stringify(version)} is not ${SLA_VERSION}; it is read as ${SLA_VERSION}`, hint: `write "sla_version": "${SLA_VERSION}"` });
  }
  const topArgs = input['args'];
  if (Array.isArray(topArgs) && topArgs.length > 0) {
    warnings.push({ path: 'args', message: 'the SLA\'s top-level args are not used (Oakestra ignores them too)', hint: 'put "args" on the microservice that should get them' });
  }
  const apps = input['applications'];
  if (Array.isArray(apps)) {
    const seen = new Map<string, number>();
    apps.forEach((app, i) => {
      if (!isRecord(app)) return;
      const ap = childPath('applications', i);
      servicesSemantics(app['microservices'], childPath(ap, 'microservices'), errors, warnings);
      const n = app['application_name'];
      const ns = app['application_namespace'];
      if (typeof n === 'string' && typeof ns === 'string') {
        const key = `${n}\u0000${ns}`;
        const before = seen.get(key);
        if (before === undefined) seen.set(key, i);
        else {
          add(errors, {
            path: childPath(ap, 'application_name'),
            message: `application ${n} in namespace ${ns} is already defined by applications[${before}]`,
            hint: 'give each application of an SLA its own application_name or application_namespace',
          });
        }
      }
    });
  }
  unknownFieldWarnings(Sla, input, '', warnings);
  return finish(errors, warnings, { sla: input as Sla });
}

/** Like validateSla, but throws InvalidSlaError (422, every issue in `details`) or LimitExceededError when invalid. */
export function assertValidSla(input: unknown): { sla: Sla; warnings: FieldIssue[] } {
  const r = validateSla(input);
  if (!r.ok) throw validationError(r);
  return { sla: r.sla, warnings: r.warnings };
}

/**
 * Validates one service (an element of `microservices`, or the body of PUT /api/service/{id}).
 * `basePath` prefixes every issue path, e.g. `applications[0].microservices[2]`.
 */
export function validateMicroservice(input: unknown, basePath = ''): MicroserviceValidation {
  const errors = new IssueList();
  const warnings = new IssueList();
  if (!isRecord(input)) {
    return { ok: false, errors: [notAnObject(basePath, 'the service', '{ "microservice_name": "server", "microservice_namespace": "test", "virtualization": "container", "code": "..." }')], warnings: [] };
  }
  const limit = overLimit(input, basePath);
  if (limit) return limit;
  structural(Microservice, input, basePath, errors);
  microserviceSemantics(input, basePath, errors, warnings);
  unknownFieldWarnings(Microservice, input, basePath, warnings);
  return finish(errors, warnings, { microservice: input as Microservice });
}

/**
 * Validates the body of POST /api/service/, which comes in one of two shapes:
 * - SLA-shaped, as Oakestra's clients send it: `{ sla_version?, customerID?, applications: [ { applicationID
 *   (or application_name + application_namespace), microservices: [ ...one or more services ] } ] }`;
 *   exactly one application, which names the target; issue paths are `applications[0].microservices[i]...`.
 * - one bare service object, optionally with `applicationID` naming the target; paths are relative to it.
 * The target may be empty when the application comes from the URL or elsewhere; the caller decides.
 */
export function validateServiceRequest(input: unknown): ServiceRequestValidation {
  const errors = new IssueList();
  const warnings = new IssueList();
  if (isRecord(input) && 'applications' in input) {
    const limit = overLimit(input, '');
    if (limit) return limit;
    structural(ServiceRequestSla, input, '', errors);
    const apps = input['applications'];
    const app = Array.isArray(apps) && isRecord(apps[0]) ? apps[0] : undefined;
    const target: ServiceTarget = {};
    if (app) {
      // services added to a stored application: their targets may be services stored before
      servicesSemantics(app['microservices'], 'applications[0].microservices', errors, warnings, false);
      for (const k of ['applicationID', 'application_name', 'application_namespace'] as const) {
        const v = app[k];
        if (typeof v === 'string') target[k] = v;
      }
    }
    unknownFieldWarnings(ServiceRequestSla, input, '', warnings);
    const services = app && Array.isArray(app['microservices']) ? (app['microservices'] as Microservice[]) : [];
    return finish(errors, warnings, { target, microservices: services });
  }
  const r = validateMicroservice(input, '');
  if (!r.ok) return r;
  const target: ServiceTarget = {};
  const id = (input as Record<string, unknown>)['applicationID'];
  if (typeof id === 'string') target.applicationID = id;
  else if (id !== undefined) return { ok: false, errors: [{ path: 'applicationID', message: 'applicationID must be a string', hint: 'use the id answered by POST /api/application/' }], warnings: r.warnings };
  return { ok: true, target, microservices: [r.microservice], warnings: r.warnings.filter((w) => w.path !== 'applicationID') };
}

/**
 * Validates the body of PUT /api/application/{id}: an application object whose fields are all
 * optional (given fields are checked; `microservices`, when given, must be complete services), or
 * an SLA-shaped document holding exactly one application (paths then start `applications[0]`).
 */
export function validateApplicationPatch(input: unknown): ApplicationPatchValidation {
  const errors = new IssueList();
  const warnings = new IssueList();
  let body = input;
  let base = '';
  const limit = overLimit(input, '');
  if (limit) return limit;
  if (isRecord(input) && 'applications' in input) {
    const apps = input['applications'];
    if (!Array.isArray(apps) || apps.length !== 1) {
      return { ok: false, errors: [{ path: 'applications', message: 'applications must hold exactly one application for an update', hint: 'send the one application to change, or its fields without the SLA wrapper' }], warnings: [] };
    }
    body = apps[0];
    base = 'applications[0]';
  }
  if (!isRecord(body)) {
    return { ok: false, errors: [notAnObject(base, 'the application', '{ "application_desc": "new text" }')], warnings: [] };
  }
  structural(ApplicationPatch, body, base, errors);
  servicesSemantics(body['microservices'], childPath(base, 'microservices'), errors, warnings);
  unknownFieldWarnings(ApplicationPatch, body, base, warnings);
  return finish(errors, warnings, { patch: body as ApplicationPatch });
}
