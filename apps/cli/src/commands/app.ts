/** `oak app create|ls|show|update|delete`. */
import type { Command } from 'commander';
import type { ApplicationDoc, ServiceDoc } from '@oak/contracts';
import type { Api } from '../client.ts';
import { parseDuration, session, type Session } from '../context.ts';
import { CliError, UsageError } from '../errors.ts';
import { age, emit, keyValues, paint, stateSummary, table, type Ui } from '../output.ts';
import { ask, canPrompt } from '../prompt.ts';
import { resolveApp } from '../resolve.ts';
import { InvalidDocumentError, applicationSla, loadDocument, printIssues } from '../sla.ts';
import { openFeed, waitForInstances } from '../wait.ts';

export const DEFAULT_TIMEOUT = '120s';

/** The services table shared by `app create`, `app show` and `service ls`. */
export async function servicesTable(ui: Ui, services: ServiceDoc[], withApp = false): Promise<string> {
  const head = ['SERVICE', 'ID', ...(withApp ? ['APPLICATION'] : []), 'VIRT', 'CODE', 'INSTANCES'];
  const rows = services.map((s) => [
    s.job_name,
    s.microserviceID,
    ...(withApp ? [`${s.application_name}.${s.application_namespace}`] : []),
    s.virtualization,
    s.code,
    stateSummary(ui, s.instance_list.map((i) => i.status)),
  ]);
  return table(ui, head, rows);
}

async function servicesOf(api: Api, apps: ApplicationDoc[]): Promise<ServiceDoc[]> {
  return (await Promise.all(apps.map((a) => api.services(a.applicationID)))).flat();
}

interface CreateOptions {
  file?: string;
  /** false with --no-deploy; true or absent: deploy */
  deploy?: boolean;
  wait?: boolean;
  timeout: string;
}

async function create(s: Session, opts: CreateOptions): Promise<void> {
  const timeoutMs = parseDuration(opts.timeout);
  if (opts.wait === true && opts.deploy === false) throw new UsageError('--wait needs instances to wait for; drop --no-deploy');
  if (opts.file === undefined) throw new UsageError('create needs the SLA file', { hint: 'oak app create -f sla.json (or oak app create sla.json)' });
  const doc = await loadDocument(opts.file);
  const { validateSla } = await import('@oak/contracts');
  const v = validateSla(doc.value);
  printIssues(s.ui, doc.name, v.ok ? [] : v.errors, v.warnings);
  if (!v.ok) throw new InvalidDocumentError(`${doc.name} is not a valid SLA`);
  // --wait: the event stream is open before the instances exist, so their first states are seen too
  const feed = opts.wait === true ? await openFeed(s.api) : undefined;
  let apps: Awaited<ReturnType<typeof s.api.createApplications>>['apps'];
  let services: ServiceDoc[];
  try {
    ({ apps } = await s.api.createApplications(doc.value, opts.deploy !== false));
    services = await servicesOf(s.api, apps);
  } catch (err) {
    feed?.close();
    throw err;
  }
  if (feed !== undefined) {
    const targets = services.map((service) => ({ service, want: service.replicas ?? 1 }));
    services = await waitForInstances(s.api, s.ui, targets, { timeoutMs, feed });
  }
  await emit(s.ui, { applications: apps, services }, async () => {
    const lines = apps.map((a) => `created application ${paint(s.ui.color, 'bold', `${a.application_name}.${a.application_namespace}`)} ${paint(s.ui.color, 'dim', `(${a.applicationID})`)}`);
    if (services.length > 0) lines.push('', await servicesTable(s.ui, services));
    if (opts.deploy === false) lines.push('', "nothing deployed (--no-deploy); deploy with 'oak service deploy <service>'");
    else if (opts.wait !== true) lines.push('', "follow the instances with 'oak instance ls' or 'oak events' (or use --wait)");
    return lines.join('\n');
  });
}

async function confirm(ui: Ui, question: string): Promise<boolean> {
  if (!canPrompt()) return true;
  const a = (await ask(`${question} [y/N] `)).trim().toLowerCase();
  if (a !== 'y' && a !== 'yes') {
    ui.err('nothing deleted');
    return false;
  }
  return true;
}

async function listApps(s: Session): Promise<void> {
  const apps = await s.api.applications();
  await emit(s.ui, apps, async () => {
    if (apps.length === 0) return "no applications; create one with 'oak app create -f <sla.json>'";
    const services = await servicesOf(s.api, apps);
    const rows = apps.map((a) => {
      const mine = services.filter((x) => x.applicationID === a.applicationID);
      return [a.application_name, a.application_namespace, a.applicationID, String(mine.length), stateSummary(s.ui, mine.flatMap((x) => x.instance_list.map((i) => i.status))), age(a.created_at)];
    });
    return table(s.ui, ['NAME', 'NAMESPACE', 'ID', 'SERVICES', 'INSTANCES', 'AGE'], rows);
  });
}

export function registerApp(program: Command): void {
  const app = program
    .command('app')
    .alias('apps')
    // Oakestra's CLI: `oak application ...` / `oak a ...`
    .alias('application')
    .alias('a')
    .description('applications: create from an SLA, list, show, update, delete')
    .addHelpText(
      'after',
      `
Applications are named by id, name, or name.namespace.

Examples:
  $ oak app create -f examples/web-server.json --wait
  $ oak app ls
  $ oak app show webdemo
  $ oak app delete webdemo`,
    );

  app
    .command('create')
    .alias('c')
    .description('create the applications of an SLA file and deploy their services')
    .argument('[sla]', "the SLA file, as -f (Oakestra's positional form)")
    .option('-f, --file <sla>', 'SLA file (JSON, or YAML if .yaml/.yml; - for stdin)')
    .option('--no-deploy', 'only create; deploy later with oak service deploy')
    .option('-d, --deploy', "deploy the services (the default; Oakestra's flag, accepted)")
    .option('-w, --wait', 'wait until every instance is RUNNING (COMPLETED for one_shot) or one fails')
    .option('--timeout <duration>', 'how long --wait waits', DEFAULT_TIMEOUT)
    .addHelpText(
      'after',
      `
The SLA is checked offline first (the root's own validator): every problem is printed as
"path: message (hint: ...)" and nothing is sent. Each service gets "replicas" instances
(default 1). With -o json the answer is { "applications": [...], "services": [...] }.

Examples:
  $ oak app create -f examples/web-server.json
  $ oak app create -f examples/client-server.json --wait --timeout 3m
  $ oak app create -f sla.json --no-deploy -o json | jq -r '.applications[0].applicationID'`,
    )
    .action(async (file: string | undefined, opts: CreateOptions, cmd: Command) => {
      if (file !== undefined && opts.file !== undefined && file !== opts.file) throw new UsageError('give the SLA file once: as -f or as the argument');
      await create(session(cmd), { ...opts, ...(file !== undefined ? { file } : {}) });
    });

  app
    .command('ls')
    .alias('list')
    .description('list the applications you can see, with the state of their instances')
    .addHelpText('after', '\nExamples:\n  $ oak app ls\n  $ oak app ls -o json')
    .action(async (_opts: unknown, cmd: Command) => listApps(session(cmd)));

  app
    .command('show')
    .alias('inspect')
    .description('one application with its services; without an argument every application (Oakestra\'s `application show`)')
    .argument('[app]', 'application id, name, or name.namespace')
    .addHelpText('after', '\nExamples:\n  $ oak app show clientsrvr\n  $ oak app show clientsrvr.test -o yaml\n  $ oak application show')
    .action(async (ref: string | undefined, _opts: unknown, cmd: Command) => {
      const s = session(cmd);
      if (ref === undefined) {
        await listApps(s);
        return;
      }
      const a = await resolveApp(s.api, ref);
      await emit(s.ui, a, async () => {
        const services = await s.api.services(a.applicationID);
        const head = keyValues(s.ui, [
          ['name', a.application_name],
          ['namespace', a.application_namespace],
          ['id', a.applicationID],
          ['description', a.application_desc],
          ['user', a.userId],
          ['created', `${a.created_at} (${age(a.created_at)} ago)`],
          ['updated', a.updated_at],
        ]);
        return services.length === 0 ? `${head}\n\nno services` : `${head}\n\n${await servicesTable(s.ui, services)}`;
      });
    });

  app
    .command('sla')
    .description("print an application's SLA (v2.0 JSON, what the root stores), ready for oak app create -f")
    .argument('<app>', 'application id, name, or name.namespace')
    .addHelpText('after', '\nExamples:\n  $ oak application sla clientsrvr > clientsrvr.json\n  $ oak app sla clientsrvr -o yaml')
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const s = session(cmd);
      const a = await resolveApp(s.api, ref);
      const services = await s.api.services(a.applicationID);
      const doc = applicationSla(a, services, a.userId);
      await emit(s.ui, doc, () => JSON.stringify(doc, null, 2));
    });

  app
    .command('update')
    .description('change an application: its fields, or its services from an SLA')
    .argument('<app>', 'application id, name, or name.namespace')
    .requiredOption('-f, --file <file>', 'application fields, or an SLA holding this one application (- for stdin)')
    .addHelpText(
      'after',
      `
Services listed in the file replace the stored ones with the same name (or microserviceID);
new ones are added; services not listed are kept. Renaming needs the application to have
no instances.

Examples:
  $ echo '{"application_desc":"v2"}' | oak app update webdemo -f -
  $ oak app update clientsrvr -f examples/client-server.json`,
    )
    .action(async (ref: string, opts: { file: string }, cmd: Command) => {
      const s = session(cmd);
      const doc = await loadDocument(opts.file);
      const { validateApplicationPatch } = await import('@oak/contracts');
      const v = validateApplicationPatch(doc.value);
      printIssues(s.ui, doc.name, v.ok ? [] : v.errors, v.warnings);
      if (!v.ok) throw new InvalidDocumentError(`${doc.name} is not a valid application update`);
      const a = await resolveApp(s.api, ref);
      const updated = await s.api.updateApplication(a.applicationID, doc.value);
      await emit(s.ui, updated, () => `updated application ${updated.application_name}.${updated.application_namespace} (${updated.applicationID})`);
    });

  app
    .command('delete')
    .alias('rm')
    // Oakestra's aliases
    .alias('del')
    .alias('d')
    .description('delete applications: undeploys every instance and deletes their services')
    .argument('<app...>', 'application ids, names, or name.namespace')
    .option('-y, --yes', 'do not ask (asked only on a terminal)')
    .addHelpText('after', '\nExamples:\n  $ oak app delete webdemo\n  $ oak app delete clientsrvr batch -y')
    .action(async (refs: string[], opts: { yes?: boolean }, cmd: Command) => {
      const s = session(cmd);
      const apps: ApplicationDoc[] = [];
      for (const ref of refs) apps.push(await resolveApp(s.api, ref));
      const names = apps.map((a) => `${a.application_name}.${a.application_namespace}`);
      if (opts.yes !== true && !(await confirm(s.ui, `delete ${names.join(', ')} and undeploy all their instances?`))) throw new CliError('cancelled');
      const deleted: string[] = [];
      for (const a of apps) {
        await s.api.deleteApplication(a.applicationID);
        deleted.push(a.applicationID);
      }
      await emit(s.ui, { deleted }, () => apps.map((a) => `deleted application ${a.application_name}.${a.application_namespace} (${a.applicationID})`).join('\n'));
    });
}

