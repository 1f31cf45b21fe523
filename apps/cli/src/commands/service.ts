/** `oak service ls|inspect|deploy|undeploy|scale|logs|update|history|rollback` and `oak instance ls`. */
import type { Command } from 'commander';
import type { InstanceDoc, ServiceDoc, ServiceVersionDoc } from '@oak/contracts';
import { nonNegativeInt, parseDuration, session, type Session } from '../context.ts';
import { networkReason, type Api } from '../client.ts';
import { CliError, isServerError, UsageError } from '../errors.ts';
import { age, dash, emit, keyValues, paint, stateSummary, status, table, type Colour, type Ui } from '../output.ts';
import { resolveApp, resolveService } from '../resolve.ts';
import { InvalidDocumentError, loadDocument, printIssues, serviceSla } from '../sla.ts';
import { lines } from '../sse.ts';
import { waitForInstances } from '../wait.ts';
import { DEFAULT_TIMEOUT, servicesTable } from './app.ts';

const SERVICE_REF = 'service id, job name (app.appns.svc.svcns), app.svc, or its name when unique';


/** instances that run or will (a root lists no desired=stop ones; an older root may list UNDEPLOYED ones) */
function liveInstances(s: ServiceDoc): InstanceDoc[] {
  return s.instance_list.filter((i) => i.status !== 'UNDEPLOYED' && i.desired !== 'stop').sort((a, b) => a.instance_number - b.instance_number);
}

/** commander parser for a version number (`--to 3`) */
function versionNumber(v: string): number {
  if (!/^[1-9][0-9]{0,8}$/.test(v.trim())) throw new UsageError(`--to must be a version number (1 or more), not ${JSON.stringify(v)}`, { hint: "see the versions with 'oak service history <service>'" });
  return Number(v);
}

export async function historyTable(ui: Ui, versions: ServiceVersionDoc[]): Promise<string> {
  return table(
    ui,
    ['VERSION', 'CREATED', 'BY', 'REASON', 'OUTCOME'],
    versions.map((v) => [
      v.current ? `${v.version} (current)` : String(v.version),
      `${v.created_at} (${age(v.created_at)} ago)`,
      dash(v.created_by_name ?? (v.created_by === null ? 'root' : v.created_by)),
      dash(v.reason),
      dash(v.outcome ?? (v.current ? 'rolling' : null)),
    ]),
  );
}

/** cluster id -> name, for tables (empty when the clusters cannot be read). */
async function clusterNames(api: Api): Promise<Map<string, string>> {
  try {
    return new Map((await api.clusters()).map((c) => [c._id, c.cluster_name]));
  } catch {
    return new Map();
  }
}

export async function instancesTable(ui: Ui, rows: { job: string; i: InstanceDoc }[], clusters: Map<string, string> = new Map()): Promise<string> {
  return table(
    ui,
    ['INSTANCE', 'STATUS', 'HEALTH', 'RESTARTS', 'DETAIL', 'CLUSTER', 'WORKER', 'IP', 'AGE'],
    rows.map(({ job, i }) => [
      `${job}.instance.${i.instance_number}`,
      status(ui.color, i.status),
      dash(i.health ?? null),
      String(i.restarts ?? 0),
      dash(i.status_detail),
      dash(i.cluster_name ?? (i.cluster_id !== null ? (clusters.get(i.cluster_id) ?? i.cluster_id) : null)),
      dash(i.worker_id),
      dash(i.instance_ip ?? i.publicip),
      age(i.created_at),
    ]),
  );
}

/** each instance's overlay addresses: its stable virtual IPs and its namespace address on its worker */
export async function addressesTable(ui: Ui, rows: InstanceDoc[]): Promise<string> {
  return table(
    ui,
    ['INSTANCE', 'INSTANCE IP', 'INSTANCE IPV6', 'NSIP', 'NSIP V6'],
    rows.map((i) => [String(i.instance_number), dash(i.instance_ip), dash(i.instance_ip_v6), dash(i.nsip), dash(i.nsip_v6)]),
  );
}

interface WaitOpts {
  wait?: boolean;
  timeout: string;
}

/** After a change: wait if asked, then print the service (JSON: the ServiceDoc). */
async function finish(s: Session, service: ServiceDoc, want: number, opts: WaitOpts, said: string[]): Promise<void> {
  const timeoutMs = parseDuration(opts.timeout);
  let doc = service;
  if (opts.wait === true) {
    [doc = service] = await waitForInstances(s.api, s.ui, [{ service, want }], { timeoutMs });
  } else {
    doc = await s.api.service(service.microserviceID);
  }
  await emit(s.ui, doc, () => [...said, `${doc.job_name}: ${stateSummary(s.ui, liveInstances(doc).map((i) => i.status))}`].join('\n'));
}

async function deploy(api: Api, s: ServiceDoc, count: number): Promise<InstanceDoc[]> {
  const made: InstanceDoc[] = [];
  for (let k = 0; k < count; k++) made.push(await api.deployInstance(s.microserviceID));
  return made;
}

async function undeploy(api: Api, s: ServiceDoc, numbers: number[]): Promise<void> {
  for (const n of numbers) await api.undeployInstance(s.microserviceID, n);
}

const LOG_COLOURS: Colour[] = ['cyan', 'magenta', 'blue', 'green', 'yellow'];

async function streamLogs(s: Session, service: ServiceDoc, numbers: number[], opts: { follow?: boolean; tail?: number }): Promise<void> {
  const stop = new AbortController();
  const onSigint = (): void => stop.abort();
  process.once('SIGINT', onSigint);
  process.once('SIGTERM', onSigint);
  const prefix = numbers.length > 1;
  try {
    await Promise.all(
      numbers.map(async (n, k) => {
        const q = new URLSearchParams();
        if (opts.follow === true) q.set('follow', '1');
        if (opts.tail !== undefined) q.set('tail', String(opts.tail));
        const qs = q.toString();
        const path = `/api/service/${encodeURIComponent(service.microserviceID)}/instance/${n}/logs${qs === '' ? '' : `?${qs}`}`;
        const tag = prefix ? `${paint(s.ui.color, LOG_COLOURS[k % LOG_COLOURS.length] ?? 'cyan', `[${n}]`)} ` : '';
        try {
          const res = await s.api.response('GET', path, { timeoutMs: 0, signal: stop.signal, raw: true });
          for await (const line of lines(res.body)) process.stdout.write(`${tag}${line}\n`);
        } catch (err) {
          if (stop.signal.aborted) return;
          if (err instanceof CliError || isServerError(err)) throw err;
          throw new CliError(`the log stream of ${service.job_name}.instance.${n} broke (${networkReason(err)})`, { hint: "is the root still running? try 'oak doctor'" });
        }
      }),
    );
  } finally {
    process.removeListener('SIGINT', onSigint);
    process.removeListener('SIGTERM', onSigint);
    stop.abort();
  }
}

/** Oakestra's positional instance number, or ours (-i); not both. */
function instanceArg(positional: string | undefined, option: number | undefined): number | undefined {
  if (positional === undefined) return option;
  const n = nonNegativeInt('the instance number')(positional);
  if (option !== undefined && option !== n) throw new UsageError('give the instance number once: as the argument or as --instance');
  return n;
}

async function listServices(s: Session, app: string | undefined): Promise<void> {
  const services = app !== undefined ? await s.api.services((await resolveApp(s.api, app)).applicationID) : await s.api.allServices();
  await emit(s.ui, services, async () => (services.length === 0 ? 'no services' : servicesTable(s.ui, services, false)));
}

/** One service (or one of its instances) rendered; with follow, again every 5 s until Ctrl-C. */
async function inspect(s: Session, ref: string, o: { instance?: number; follow?: boolean }): Promise<void> {
  const once = async (): Promise<void> => {
    const full = await resolveService(s.api, ref);
    const d = o.instance === undefined ? full : { ...full, instance_list: full.instance_list.filter((i) => i.instance_number === o.instance) };
    if (o.instance !== undefined && d.instance_list.length === 0) throw new CliError(`${full.job_name} has no instance ${o.instance}`, { hint: `oak service inspect ${full.job_name} lists its instances` });
    await emit(s.ui, d, async () => {
      const head = keyValues(s.ui, [
        ['job', d.job_name],
        ['id', d.microserviceID],
        ['application', `${d.application_name}.${d.application_namespace} (${d.applicationID})`],
        ['virtualization', d.virtualization],
        ['code', d.code],
        ['cmd', d.cmd !== undefined ? JSON.stringify(d.cmd) : undefined],
        ['environment', d.environment?.join(' ')],
        ['memory', d.memory !== undefined ? `${d.memory} MB` : undefined],
        ['vcpus', d.vcpus],
        ['vgpus', d.vgpus || undefined],
        ['port', d.port],
        ['replicas', d.replicas ?? 1],
        ['version', d.version],
        ['one_shot', d.one_shot === true ? 'yes' : undefined],
        ['service ip', d.service_ip ?? d.addresses?.rr_ip],
        ['service ip v6', d.service_ip_v6 ?? d.addresses?.rr_ip_v6],
        ['closest ip', d.closest_ip],
        ['closest ip v6', d.closest_ip_v6],
        ['constraints', d.constraints !== undefined && d.constraints.length > 0 ? JSON.stringify(d.constraints) : undefined],
        ['created', `${d.created_at} (${age(d.created_at)} ago)`],
      ]);
      const inst = d.instance_list.sort((a, b) => a.instance_number - b.instance_number);
      const parts = [head, ''];
      if (inst.length === 0) parts.push(`no instances; deploy one with 'oak service deploy ${d.job_name}'`);
      else {
        parts.push(await instancesTable(s.ui, inst.map((i) => ({ job: d.job_name, i })), await clusterNames(s.api)));
        parts.push('', await addressesTable(s.ui, inst));
      }
      const history = inst
        .flatMap((i) => (i.history ?? []).map((h) => ({ n: i.instance_number, ...h })))
        .sort((a, b) => a.at.localeCompare(b.at))
        .slice(-12);
      if (history.length > 0) {
        parts.push('', await table(s.ui, ['TIME', 'INSTANCE', 'TRANSITION', 'DETAIL'], history.map((h) => [h.at, String(h.n), status(s.ui.color, h.status), dash(h.status_detail)])));
      }
      return parts.join('\n');
    });
  };
  await once();
  if (o.follow !== true) return;
  const stop = new AbortController();
  const onSigint = (): void => stop.abort();
  process.once('SIGINT', onSigint);
  try {
    while (!stop.signal.aborted) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 5000);
        stop.signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
      });
      if (!stop.signal.aborted) await once();
    }
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}

export function registerService(program: Command): void {
  const svc = program
    .command('service')
    .alias('services')
    .alias('svc')
    .alias('s')
    .description('services: list, inspect, deploy, undeploy, scale, logs, update, history, rollback')
    .addHelpText(
      'after',
      `
Services are named by ${SERVICE_REF}.

Examples:
  $ oak service ls
  $ oak service inspect clientsrvr.server
  $ oak service scale clientsrvr.server 3 --wait
  $ oak service logs clientsrvr.server -f
  $ oak service history clientsrvr.server
  $ oak service rollback clientsrvr.server --to 2`,
    );

  svc
    .command('ls')
    .alias('list')
    .description('list services (of every application, or of one)')
    .option('-a, --app <app>', 'only the services of this application')
    .addHelpText('after', '\nExamples:\n  $ oak service ls\n  $ oak service ls --app clientsrvr -o json')
    .action(async (opts: { app?: string }, cmd: Command) => listServices(session(cmd), opts.app));

  svc
    .command('show')
    .description("without a service: list services (Oakestra's `service show`, filtered by -i / -n); with one: as inspect")
    .argument('[service]', SERVICE_REF)
    .option('-i, --app-id <id>', 'only the services of the application with this id')
    .option('-n, --app-name <name>', 'only the services of the application with this name')
    .addHelpText('after', '\nExamples:\n  $ oak service show\n  $ oak s show -n clientsrvr\n  $ oak service show clientsrvr.server')
    .action(async (ref: string | undefined, opts: { appId?: string; appName?: string }, cmd: Command) => {
      const s = session(cmd);
      if (ref !== undefined) {
        if (opts.appId !== undefined || opts.appName !== undefined) throw new UsageError('-i / -n filter the list; leave them out when naming a service');
        await inspect(s, ref, {});
        return;
      }
      if (opts.appId !== undefined && opts.appName !== undefined) throw new UsageError('give -i or -n, not both');
      await listServices(s, opts.appId ?? opts.appName);
    });

  svc
    .command('inspect')
    .alias('i')
    .description('one service: its SLA, its instances and their latest transitions')
    .argument('<service>', SERVICE_REF)
    .argument('[instance]', "only this instance number (Oakestra's form)")
    .option('-f, --follow', 'show it again every 5 seconds until Ctrl-C')
    .addHelpText('after', '\nExamples:\n  $ oak service inspect clientsrvr.server\n  $ oak service inspect clientsrvr.server 0\n  $ oak service inspect 6650f1c2a9b3e4d5f6a7b8c9 -o yaml')
    .action(async (ref: string, instance: string | undefined, opts: { follow?: boolean }, cmd: Command) => {
      const s = session(cmd);
      const only = instance !== undefined ? nonNegativeInt('the instance number')(instance) : undefined;
      await inspect(s, ref, { ...(only !== undefined ? { instance: only } : {}), ...(opts.follow === true ? { follow: true } : {}) });
    });

  svc
    .command('deploy')
    .alias('d')
    .description('deploy more instances of a service (default one); --all: one more of every service')
    .argument('[service]', SERVICE_REF)
    .option('-n, --count <n>', 'how many instances', nonNegativeInt('--count'), 1)
    .option('--all', "one new instance of every service you can see (Oakestra's flag)")
    .option('-w, --wait', 'wait until they are RUNNING (COMPLETED for one_shot) or one fails')
    .option('--timeout <duration>', 'how long --wait waits', DEFAULT_TIMEOUT)
    .addHelpText('after', '\nExamples:\n  $ oak service deploy clientsrvr.server\n  $ oak service deploy clientsrvr.client -n 2 --wait\n  $ oak service deploy --all')
    .action(async (ref: string | undefined, opts: WaitOpts & { count: number; all?: boolean }, cmd: Command) => {
      const s = session(cmd);
      parseDuration(opts.timeout);
      if (opts.all === true) {
        if (ref !== undefined) throw new UsageError('--all deploys every service; leave the service out');
        const said: string[] = [];
        for (const d of await s.api.allServices()) {
          for (const i of await deploy(s.api, d, 1)) said.push(`deployed ${d.job_name}.instance.${i.instance_number} (${i.status})`);
        }
        await emit(s.ui, { deployed: said.length }, () => (said.length === 0 ? 'no services' : said.join('\n')));
        return;
      }
      if (ref === undefined) throw new UsageError('deploy needs the service', { hint: 'oak service deploy <service> [-n count], or oak service deploy --all' });
      const d = await resolveService(s.api, ref);
      const made = await deploy(s.api, d, opts.count);
      const said = made.map((i) => `deployed ${d.job_name}.instance.${i.instance_number} (${i.status})`);
      await finish(s, d, liveInstances(d).length + made.length, opts, said);
    });

  svc
    .command('undeploy')
    .alias('u')
    .alias('down')
    .description('undeploy every instance of a service, or one of them (the service stays)')
    .argument('<service>', SERVICE_REF)
    .argument('[instance]', "only this instance number (Oakestra's form of --instance)")
    .option('-i, --instance <n>', 'only this instance number', nonNegativeInt('--instance'))
    .addHelpText('after', '\nExamples:\n  $ oak service undeploy clientsrvr.client\n  $ oak service undeploy clientsrvr.server --instance 1\n  $ oak s undeploy clientsrvr.server 1')
    .action(async (ref: string, instance: string | undefined, opts: { instance?: number }, cmd: Command) => {
      const s = session(cmd);
      const only = instanceArg(instance, opts.instance);
      const d = await resolveService(s.api, ref);
      const numbers = only !== undefined ? [only] : liveInstances(d).map((i) => i.instance_number);
      await undeploy(s.api, d, numbers);
      const said = numbers.length === 0 ? ['nothing to undeploy'] : numbers.map((n) => `undeployed ${d.job_name}.instance.${n}`);
      await finish(s, d, 0, { timeout: DEFAULT_TIMEOUT }, said);
    });

  svc
    .command('scale')
    .description('add or remove instances (highest numbers first) until there are <count>; or `scale up|down <service> [n]`')
    .argument('<service>', `${SERVICE_REF}; or up / down (Oakestra's form)`)
    .argument('[count]', 'the number of instances wanted; after up/down: the service')
    .argument('[n]', 'after up/down: how many instances to add or remove (default 1)')
    .option('-w, --wait', 'wait until all are RUNNING (COMPLETED for one_shot) or one fails')
    .option('--timeout <duration>', 'how long --wait waits', DEFAULT_TIMEOUT)
    .addHelpText('after', '\nExamples:\n  $ oak service scale clientsrvr.server 3 --wait\n  $ oak service scale clientsrvr.server 0\n  $ oak service scale up clientsrvr.server\n  $ oak service scale down clientsrvr.server 2')
    .action(async (first: string, second: string | undefined, third: string | undefined, opts: WaitOpts, cmd: Command) => {
      const s = session(cmd);
      parseDuration(opts.timeout);
      const relative = first === 'up' || first === 'down';
      if (relative && second === undefined) throw new UsageError(`scale ${first} needs the service`, { hint: `oak service scale ${first} <service> [n]` });
      if (!relative && second === undefined) throw new UsageError('scale needs the count', { hint: 'oak service scale <service> <count>, or oak service scale up|down <service> [n]' });
      if (!relative && third !== undefined) throw new UsageError(`unexpected ${JSON.stringify(third)} after the count`);
      const ref = relative ? (second as string) : first;
      const amount = nonNegativeInt(relative ? 'n' : 'the count')(relative ? (third ?? '1') : (second as string));
      const d = await resolveService(s.api, ref);
      const live = liveInstances(d);
      const count = !relative ? amount : first === 'up' ? live.length + amount : Math.max(0, live.length - amount);
      const said: string[] = [];
      if (count > live.length) {
        for (const i of await deploy(s.api, d, count - live.length)) said.push(`deployed ${d.job_name}.instance.${i.instance_number}`);
      } else if (count < live.length) {
        const drop = live
          .map((i) => i.instance_number)
          .sort((a, b) => b - a)
          .slice(0, live.length - count);
        await undeploy(s.api, d, drop);
        for (const n of drop) said.push(`undeployed ${d.job_name}.instance.${n}`);
      } else said.push(`${d.job_name} already has ${count} instance${count === 1 ? '' : 's'}`);
      await finish(s, d, count, opts, said);
    });

  svc
    .command('logs')
    .description('print (and with -f follow) the log lines of a service\'s instances')
    .argument('<service>', SERVICE_REF)
    .argument('[instance]', "only this instance number (Oakestra's form of --instance)")
    .option('-i, --instance <n>', 'only this instance number (default: all, each line prefixed with [n])', nonNegativeInt('--instance'))
    .option('-f, --follow', 'keep printing new lines until Ctrl-C')
    .option('--tail <lines>', 'start with the last N lines', nonNegativeInt('--tail'))
    .addHelpText('after', '\nExamples:\n  $ oak service logs clientsrvr.server\n  $ oak service logs clientsrvr.server -f --tail 20\n  $ oak service logs batch.job --instance 0')
    .action(async (ref: string, instance: string | undefined, given: { instance?: number; follow?: boolean; tail?: number }, cmd: Command) => {
      const s = session(cmd);
      const only = instanceArg(instance, given.instance);
      const opts = { ...given, ...(only !== undefined ? { instance: only } : {}) };
      const d = await resolveService(s.api, ref);
      // no live instance: the ended ones (their workers keep their logs for a while)
      const live = liveInstances(d);
      const numbers = opts.instance !== undefined ? [opts.instance] : (live.length > 0 ? live : d.instance_list).map((i) => i.instance_number);
      if (numbers.length === 0) throw new CliError(`${d.job_name} has no instances`, { hint: `deploy one with 'oak service deploy ${d.job_name}'` });
      await streamLogs(s, d, numbers, opts);
    });

  svc
    .command('update')
    .description("change a service's SLA fields (the others are kept)")
    .argument('<service>', SERVICE_REF)
    .requiredOption('-f, --file <fields>', 'JSON object of service fields to change (- for stdin)')
    .addHelpText(
      'after',
      `
The result must be a valid service: it is checked offline first with the root's validator.

Examples:
  $ echo '{"memory": 200, "environment": ["MODE=fast"]}' | oak service update clientsrvr.server -f -
  $ oak service update clientsrvr.server -f server-fields.json`,
    )
    .action(async (ref: string, opts: { file: string }, cmd: Command) => {
      const s = session(cmd);
      const doc = await loadDocument(opts.file);
      if (typeof doc.value !== 'object' || doc.value === null || Array.isArray(doc.value)) {
        throw new UsageError(`${doc.name} must hold a JSON object of service fields`, { hint: 'for example { "memory": 200 }' });
      }
      const fields = doc.value as Record<string, unknown>;
      const d = await resolveService(s.api, ref);
      const merged = serviceSla({ ...d, ...fields });
      const { validateMicroservice } = await import('@oak/contracts');
      const v = validateMicroservice(merged);
      const mine = (path: string): boolean => Object.keys(fields).some((k) => path === k || path.startsWith(`${k}.`) || path.startsWith(`${k}[`));
      printIssues(s.ui, doc.name, v.ok ? [] : v.errors, v.warnings.filter((w) => mine(w.path)));
      if (!v.ok) throw new InvalidDocumentError(`${doc.name} does not make a valid service`);
      const updated = await s.api.updateService(d.microserviceID, fields);
      await emit(s.ui, updated, () => `updated ${updated.job_name} (${Object.keys(fields).join(', ')})`);
    });

  svc
    .command('history')
    .description("the versions of a service's SLA: every change and rollback, who made it, how its rollout ended")
    .argument('<service>', SERVICE_REF)
    .addHelpText(
      'after',
      `
OUTCOME: complete, stopped: <why> (the rest kept the older version), rolled back: <why>,
superseded (a newer version came first), rolling (the current version, still rolling out).
With -o json: the versions with their full SLA.

Examples:
  $ oak service history clientsrvr.server
  $ oak service history clientsrvr.server -o json`,
    )
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const s = session(cmd);
      const d = await resolveService(s.api, ref);
      const versions = await s.api.serviceHistory(d.microserviceID);
      await emit(s.ui, versions, async () => (versions.length === 0 ? `${d.job_name} has no stored versions` : historyTable(s.ui, versions)));
    });

  svc
    .command('rollback')
    .description('restore an earlier version of the SLA (stored as a new version and rolled out like any change)')
    .argument('<service>', SERVICE_REF)
    .option('--to <version>', 'the version to restore (default: the newest earlier one whose rollout completed, else the previous one)', versionNumber)
    .addHelpText('after', '\nExamples:\n  $ oak service rollback clientsrvr.server\n  $ oak service rollback clientsrvr.server --to 2')
    .action(async (ref: string, opts: { to?: number }, cmd: Command) => {
      const s = session(cmd);
      const d = await resolveService(s.api, ref);
      const updated = await s.api.rollbackService(d.microserviceID, opts.to);
      const [last] = (await s.api.serviceHistory(d.microserviceID)).filter((v) => v.version === updated.version);
      const what = last?.reason ?? (opts.to !== undefined ? `rollback to ${opts.to}` : 'rollback');
      await emit(s.ui, updated, () => `${updated.job_name}: version ${updated.version ?? '?'} (${what}); follow it with 'oak service history ${updated.job_name}'`);
    });
}

export function registerInstance(program: Command): void {
  const inst = program
    .command('instance')
    .alias('instances')
    .description('instances of services')
    .addHelpText('after', '\nExamples:\n  $ oak instance ls\n  $ oak instance ls clientsrvr.server');

  inst
    .command('ls')
    .alias('list')
    .description('list instances with their state, place and address')
    .argument('[service]', SERVICE_REF)
    .option('-a, --app <app>', 'only the instances of this application')
    .addHelpText(
      'after',
      `
With -o json: one object per instance, the InstanceDoc plus job_name, microserviceID and applicationID.

Examples:
  $ oak instance ls
  $ oak instance ls --app clientsrvr
  $ oak instance ls clientsrvr.server -o json`,
    )
    .action(async (ref: string | undefined, opts: { app?: string }, cmd: Command) => {
      const s = session(cmd);
      let services: ServiceDoc[];
      if (ref !== undefined) services = [await resolveService(s.api, ref)];
      else if (opts.app !== undefined) services = await s.api.services((await resolveApp(s.api, opts.app)).applicationID);
      else services = await s.api.allServices();
      const rows = services.flatMap((d) => liveInstances(d).map((i) => ({ job: d.job_name, d, i })));
      const data = rows.map(({ d, i }) => ({ job_name: d.job_name, microserviceID: d.microserviceID, applicationID: d.applicationID, ...i }));
      await emit(s.ui, data, async () => (rows.length === 0 ? 'no instances' : instancesTable(s.ui, rows, await clusterNames(s.api))));
    });
}
