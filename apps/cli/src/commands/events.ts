/** `oak events`: the root's live event stream, one line (or JSON line) per event. */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import type { OakEvent } from '@oak/contracts';
import type { Api } from '../client.ts';
import { nonNegativeInt, session } from '../context.ts';
import { UnreachableError, UsageError } from '../errors.ts';
import { paint, status, type Ui } from '../output.ts';
import { oakEvents } from '../sse.ts';

const TYPES = ['instance', 'application', 'service', 'cluster'];

function clock(): string {
  return new Date().toISOString().slice(11, 19);
}

/** Names for the ids of application and service events, looked up once. */
class Names {
  private readonly apps = new Map<string, string>();
  private readonly services = new Map<string, string>();
  constructor(private readonly api: Api) {}

  async app(id: string): Promise<string> {
    let n = this.apps.get(id);
    if (n === undefined) {
      n = await this.api.application(id).then((a) => `${a.application_name}.${a.application_namespace}`, () => id);
      this.apps.set(id, n);
    }
    return n;
  }

  async service(id: string): Promise<string> {
    let n = this.services.get(id);
    if (n === undefined) {
      n = await this.api.service(id).then((s) => s.job_name, () => id);
      this.services.set(id, n);
    }
    return n;
  }

  remember(e: OakEvent): void {
    if (e.type === 'instance') this.services.set(e.microserviceID, e.job_name);
  }
}

async function line(ui: Ui, names: Names, e: OakEvent): Promise<string> {
  const kind = paint(ui.color, 'cyan', e.type.padEnd(11));
  const t = paint(ui.color, 'dim', clock());
  switch (e.type) {
    case 'instance': {
      const i = e.instance;
      return `${t}  ${kind}  ${e.job_name}.instance.${i.instance_number}  ${status(ui.color, i.status)}${i.status_detail !== '' ? `  ${i.status_detail}` : ''}`;
    }
    case 'application':
      return `${t}  ${kind}  ${e.action.padEnd(9)}  ${e.action === 'deleted' ? e.applicationID : await names.app(e.applicationID)}`;
    case 'service':
      return `${t}  ${kind}  ${e.action.padEnd(9)}  ${e.action === 'deleted' ? e.microserviceID : await names.service(e.microserviceID)}`;
    case 'cluster':
      return `${t}  ${kind}  ${e.action.padEnd(9)}  ${e.cluster_name} ${paint(ui.color, 'dim', `(${e.cluster_id})`)}`;
    default:
      return `${t}  ${JSON.stringify(e)}`;
  }
}

export function registerEvents(program: Command): void {
  program
    .command('events')
    .description('follow the live events of the root (instances, applications, services, clusters) until Ctrl-C')
    .option('-t, --types <list>', `comma-separated subset of ${TYPES.join(',')}`)
    .option('-n, --count <n>', 'stop after this many events', nonNegativeInt('--count'))
    .addHelpText(
      'after',
      `
One line per event; with -o json one JSON object per line (the OakEvent, as the API sends it).
If the stream breaks (root restart), it reconnects.

Examples:
  $ oak events
  $ oak events --types instance
  $ oak events -o json | jq -c 'select(.type=="instance") | .instance.status'`,
    )
    .action(async (opts: { types?: string; count?: number }, cmd: Command) => {
      const s = session(cmd);
      const types = opts.types?.split(',').map((x) => x.trim()).filter((x) => x !== '') ?? [];
      const unknown = types.filter((x) => !TYPES.includes(x));
      if (unknown.length > 0) throw new UsageError(`unknown event type ${unknown.join(', ')}`, { hint: `use ${TYPES.join(', ')}` });
      const stop = new AbortController();
      const onSignal = (): void => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const names = new Names(s.api);
      const path = `/api/events${types.length > 0 ? `?types=${types.join(',')}` : ''}`;
      let seen = 0;
      let connected = false;
      // the notice is printed once per outage; retries back off from 1 s to 10 s
      let down = false;
      let delay = 1000;
      try {
        while (!stop.signal.aborted) {
          try {
            const res = await s.api.response('GET', path, { timeoutMs: 0, signal: stop.signal, raw: true });
            if (down) s.ui.err(paint(s.ui.errColor, 'dim', 'oak: event stream back'));
            connected = true;
            down = false;
            delay = 1000;
            let ended: string | undefined;
            for await (const e of oakEvents(res.body, (reason) => (ended = reason))) {
              names.remember(e);
              if (s.ui.format === 'table') s.ui.out(await line(s.ui, names, e));
              else s.ui.out(JSON.stringify(e));
              seen += 1;
              if (opts.count !== undefined && seen >= opts.count) {
                stop.abort();
                break;
              }
            }
            if (!stop.signal.aborted && !down) {
              down = true;
              s.ui.err(paint(s.ui.errColor, 'yellow', `oak: the root closed the event stream${ended !== undefined ? ` (${ended})` : ''}; reconnecting`));
            }
          } catch (err) {
            if (stop.signal.aborted) break;
            if (!connected) throw err;
            // logged out, password or role changed, user removed: reconnecting cannot help
            if ((err as { status?: unknown }).status === 401) throw err;
            if (!down) {
              down = true;
              s.ui.err(paint(s.ui.errColor, 'yellow', `oak: lost the event stream (${err instanceof UnreachableError ? err.reason : err instanceof Error ? err.message : String(err)}); reconnecting`));
            }
          }
          if (!stop.signal.aborted) {
            await sleep(delay, undefined, { signal: stop.signal }).catch(() => undefined);
            delay = Math.min(delay * 2, 10_000);
          }
        }
      } finally {
        process.removeListener('SIGINT', onSignal);
        process.removeListener('SIGTERM', onSignal);
      }
    });
}
