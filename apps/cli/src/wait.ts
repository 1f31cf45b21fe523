/**
 * `--wait`: follows instances until every one is RUNNING (COMPLETED for one-shot services) or
 * one fails, with a timeout. Changes arrive on GET /api/events (server-sent events); the services
 * are also re-read every few seconds, so a lost event or a root without the stream only slows
 * the wait down. On a terminal a spinner shows the current states; otherwise each change is one
 * line on stderr. A command that creates instances opens the stream first (InstanceFeed), so the
 * states they pass through while the command reads them back are shown too, in their order.
 */
import type { InstanceDoc, OakEvent, ServiceDoc } from '@oak/contracts';
import type { Api } from './client.ts';
import { WaitFailedError } from './errors.ts';
import { paint, stateSummary, status, type Ui } from './output.ts';
import { oakEvents } from './sse.ts';

export interface WaitTarget {
  service: ServiceDoc;
  /** how many live instances the service should end up with */
  want: number;
}

export interface WaitOptions {
  timeoutMs: number;
  /** how often to re-read the services (ms) */
  pollMs?: number;
  /** a stream opened before the instances were asked for (default: one opened now) */
  feed?: InstanceFeed;
}

/** events kept until a wait takes them (a create of many instances sends a few each) */
const FEED_BUFFER = 10_000;

/** The root's instance events from the moment this is made, kept until a wait takes them. */
export class InstanceFeed {
  readonly #stop = new AbortController();
  readonly #buffer: OakEvent[] = [];
  #sink: ((e: OakEvent) => void) | undefined;
  #streaming = false;
  /** true once the root streams (its subscription is in place), false when it could not */
  readonly connected: Promise<boolean>;

  constructor(api: Api) {
    let ready: (ok: boolean) => void = () => undefined;
    this.connected = new Promise((r) => (ready = r));
    void (async () => {
      try {
        const res = await api.response('GET', '/api/events?types=instance', { timeoutMs: 0, signal: this.#stop.signal, raw: true });
        this.#streaming = true;
        ready(true);
        for await (const e of oakEvents(res.body)) {
          if (this.#sink !== undefined) this.#sink(e);
          else if (this.#buffer.length < FEED_BUFFER) this.#buffer.push(e);
        }
      } catch {
        // the wait's poll carries on
      } finally {
        this.#streaming = false;
        ready(false);
      }
    })();
  }

  get streaming(): boolean {
    return this.#streaming;
  }

  /** `sink` gets what was kept, in order, then every further event */
  take(sink: (e: OakEvent) => void): void {
    this.#sink = sink;
    for (const e of this.#buffer.splice(0)) sink(e);
  }

  close(): void {
    this.#stop.abort();
  }
}

/** A feed whose stream is open (or that gave up after `ms`): what is created after this is seen from its first state. */
export async function openFeed(api: Api, ms = 3000): Promise<InstanceFeed> {
  const feed = new InstanceFeed(api);
  let t: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([feed.connected, new Promise((r) => (t = setTimeout(r, ms)))]);
  clearTimeout(t);
  return feed;
}

const FAILED = new Set(['FAILED', 'DEAD']);

interface Tracked {
  target: WaitTarget;
  oneShot: boolean;
  instances: Map<number, InstanceDoc>;
}

function live(t: Tracked): InstanceDoc[] {
  // an instance on its way out (desired stop, issue 9) counts as gone, like an UNDEPLOYED one
  return [...t.instances.values()].filter((i) => i.status !== 'UNDEPLOYED' && i.desired !== 'stop').sort((a, b) => a.instance_number - b.instance_number);
}

function isDone(t: Tracked): boolean {
  const l = live(t);
  const ok = (i: InstanceDoc): boolean => i.status === 'COMPLETED' || (!t.oneShot && i.status === 'RUNNING');
  return l.length >= t.target.want && l.every(ok);
}

function instanceLine(ui: Ui, job: string, i: InstanceDoc): string {
  const detail = i.status_detail !== '' ? ` ${paint(ui.errColor, 'dim', `(${i.status_detail})`)}` : '';
  return `${job}.instance.${i.instance_number}: ${status(ui.errColor, i.status)}${detail}`;
}

function formatSeconds(ms: number): string {
  return `${Math.round(ms / 1000)}s`;
}

export async function waitForInstances(api: Api, ui: Ui, targets: WaitTarget[], opts: WaitOptions): Promise<ServiceDoc[]> {
  const tracked = new Map<string, Tracked>();
  for (const target of targets) {
    tracked.set(target.service.microserviceID, {
      target,
      oneShot: target.service.one_shot === true,
      instances: new Map(target.service.instance_list.map((i) => [i.instance_number, i])),
    });
  }
  const started = Date.now();
  const stop = new AbortController();
  const feed = opts.feed ?? new InstanceFeed(api);
  /** per instance: the state last shown and the time it had (an older one is never shown after it) */
  const seen = new Map<string, { now: string; at: number }>();
  let spinner: { text: string; stop(): void; stopAndPersist(o: { symbol: string; text: string }): void } | undefined;
  if (ui.interactive) {
    const { default: ora } = await import('ora');
    spinner = ora({ text: 'waiting for the instances', stream: process.stderr, color: 'yellow', discardStdin: false }).start();
  }

  /** one line, no colours, cut to the terminal's width (the spinner redraws it in place) */
  const progressText = (): string => {
    const parts = [...tracked.values()].map((t) => {
      const l = live(t);
      const pending = l.find((i) => i.status !== 'RUNNING' && i.status !== 'COMPLETED' && i.status_detail !== '');
      const why = pending ? ` (${pending.status_detail})` : '';
      return `${t.target.service.job_name}: ${stateSummary(undefined, l.map((i) => i.status), false)}${l.length < t.target.want ? `, ${t.target.want - l.length} to come` : ''}${why}`;
    });
    const text = `${formatSeconds(Date.now() - started)} ${parts.join('; ')}`;
    const width = Math.max(20, (process.stderr.columns ?? 80) - 3);
    return text.length > width ? `${text.slice(0, width - 1)}…` : text;
  };

  /** one line for a state of an instance, unless it is the one last shown or older than it */
  const show = (t: Tracked, i: InstanceDoc): void => {
    if (spinner) return;
    const key = `${t.target.service.microserviceID}/${i.instance_number}`;
    const now = `${i.status}|${i.status_detail}`;
    const at = Date.parse(i.updated_at);
    const last = seen.get(key);
    if (last !== undefined && (last.now === now || at < last.at)) return;
    seen.set(key, { now, at: Number.isNaN(at) ? (last?.at ?? 0) : at });
    ui.err(instanceLine(ui, t.target.service.job_name, i));
  };

  const report = (): void => {
    if (spinner) {
      spinner.text = progressText();
      return;
    }
    for (const t of tracked.values()) for (const i of live(t)) show(t, i);
  };

  let settle: (err?: Error) => void = () => undefined;
  const finished = new Promise<void>((resolve, reject) => {
    settle = (err) => (err ? reject(err) : resolve());
  });

  const evaluate = (): void => {
    report();
    for (const t of tracked.values()) {
      const bad = live(t).find((i) => FAILED.has(i.status));
      if (bad) {
        settle(
          new WaitFailedError(`${t.target.service.job_name}.instance.${bad.instance_number} is ${bad.status}${bad.status_detail !== '' ? `: ${bad.status_detail}` : ''}`, {
            hint: `see 'oak service inspect ${t.target.service.job_name}' and 'oak service logs ${t.target.service.job_name} --instance ${bad.instance_number}'`,
          }),
        );
        return;
      }
    }
    if ([...tracked.values()].every(isDone)) settle();
  };

  const apply = (e: OakEvent): void => {
    if (e.type !== 'instance') return;
    const t = tracked.get(e.microserviceID);
    if (!t) return;
    // a state passed before the services were read back (kept by the feed) is shown, in order
    if (e.instance.status !== 'UNDEPLOYED' && e.instance.desired !== 'stop') show(t, e.instance);
    const before = t.instances.get(e.instance.instance_number);
    if (before && Date.parse(before.updated_at) > Date.parse(e.instance.updated_at)) return;
    t.instances.set(e.instance.instance_number, e.instance);
    evaluate();
  };

  const poll = async (): Promise<void> => {
    const pollMs = opts.pollMs ?? 1000;
    while (!stop.signal.aborted) {
      try {
        const docs = await Promise.all([...tracked.keys()].map((id) => api.service(id)));
        for (const d of docs) {
          const t = tracked.get(d.microserviceID);
          if (t) t.instances = new Map(d.instance_list.map((i) => [i.instance_number, i]));
        }
        evaluate();
      } catch (err) {
        settle(err as Error);
        return;
      }
      await new Promise((r) => setTimeout(r, feed.streaming ? pollMs * 3 : pollMs).unref());
    }
  };

  const timer = setTimeout(() => {
    const states = [...tracked.values()].flatMap((t) => {
      const l = live(t);
      const lines = l.map((i) => `  ${instanceLine(ui, t.target.service.job_name, i)}`);
      if (l.length < t.target.want) lines.push(`  ${t.target.service.job_name}: ${t.target.want - l.length} instance(s) not created`);
      return lines;
    });
    settle(
      new WaitFailedError(`timed out after ${formatSeconds(opts.timeoutMs)} waiting for the instances${states.length > 0 ? `; last states:\n${states.join('\n')}` : ''}`, {
        hint: "the instances carry on; follow them with 'oak events' or 'oak instance ls', or wait longer with --timeout",
      }),
    );
  }, opts.timeoutMs);

  const ticker = setInterval(() => {
    if (spinner) spinner.text = progressText();
  }, 1000);
  feed.take(apply);
  evaluate();
  void poll();
  try {
    await finished;
    spinner?.stopAndPersist({ symbol: paint(ui.errColor, 'green', '✓'), text: progressText() });
  } catch (err) {
    spinner?.stopAndPersist({ symbol: paint(ui.errColor, 'red', '✗'), text: progressText() });
    throw err;
  } finally {
    clearTimeout(timer);
    clearInterval(ticker);
    stop.abort();
    feed.close();
    spinner?.stop();
  }
  return Promise.all([...tracked.keys()].map((id) => api.service(id)));
}
