/**
 * Applications and their services, kept live: loaded once (and again after the event stream
 * reconnects, for what it missed), then changed by /api/events: instance events replace the
 * instance in place, application and service events reload what they name. No polling.
 *
 * A list read from the root may be older than instance events that arrived while it was on its
 * way (a rolling update sends many at once): the events received since the request started are
 * applied again on top of it, each only where it is not older than what the list says
 * (updated_at), so a late answer never turns a RUNNING instance back into NODE_SCHEDULED.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import type { ApplicationDoc, InstanceDoc, ServiceDoc } from '@oak/contracts';
import { api, ApiError } from '../../lib/api.ts';
import { useEpoch, useEvents } from '../../lib/events.ts';
import { applyInstance, replayInstances, type InstanceEvent, type Received } from './merge.ts';

export interface AppsState {
  apps: ApplicationDoc[] | undefined;
  services: Record<string, ServiceDoc[]>;
  error: unknown;
  /** the one application asked for was not found (deleted, or not of the user's organisation) */
  gone: boolean;
}

const enc = encodeURIComponent;

/** Instances still meant to run (the ones on their way out are left out, as in the CLI). */
export function liveInstances(s: ServiceDoc): InstanceDoc[] {
  return s.instance_list.filter((i) => i.status !== 'UNDEPLOYED' && i.desired !== 'stop').sort((a, b) => a.instance_number - b.instance_number);
}

/** instance events kept to be applied again on lists that were on their way meanwhile */
const RECENT_MS = 60_000;
const RECENT_MAX = 2000;

export function useApplications(only?: string): AppsState & { reload: () => void } {
  const [state, setState] = useState<AppsState>({ apps: undefined, services: {}, error: undefined, gone: false });
  const epoch = useEpoch();
  const gen = useRef(0);
  const recent = useRef<Received[]>([]);

  /** `list` (of application `appId`, asked for at `since`) with the instance events received since */
  const settle = useCallback((appId: string, list: ServiceDoc[], since: number): ServiceDoc[] => replayInstances(list, recent.current, appId, since), []);

  const loadServices = useCallback(async (appId: string): Promise<void> => {
    try {
      const since = Date.now();
      const list = await api.get<ServiceDoc[]>(`/api/services/${enc(appId)}`);
      setState((s) => ({ ...s, services: { ...s.services, [appId]: settle(appId, list, since) } }));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return;
      setState((s) => ({ ...s, error: err }));
    }
  }, [settle]);

  const reload = useCallback((): void => {
    const mine = ++gen.current;
    const since = Date.now();
    void (async () => {
      try {
        const apps = only === undefined ? await api.get<ApplicationDoc[]>('/api/applications/') : [await api.get<ApplicationDoc>(`/api/application/${enc(only)}`)];
        const lists = await Promise.all(apps.map((a) => api.get<ServiceDoc[]>(`/api/services/${enc(a.applicationID)}`).catch(() => [] as ServiceDoc[])));
        if (mine !== gen.current) return;
        const services: Record<string, ServiceDoc[]> = {};
        apps.forEach((a, i) => (services[a.applicationID] = settle(a.applicationID, lists[i] ?? [], since)));
        setState({ apps, services, error: undefined, gone: false });
      } catch (err) {
        if (mine !== gen.current) return;
        if (only !== undefined && err instanceof ApiError && (err.status === 404 || err.status === 403)) setState({ apps: [], services: {}, error: undefined, gone: true });
        else setState((s) => ({ ...s, error: err }));
      }
    })();
  }, [only, settle]);

  useEffect(reload, [reload, epoch]);

  useEvents((e) => {
    if (e.type === 'instance') {
      const now = Date.now();
      const kept = recent.current.filter((r) => now - r.at < RECENT_MS);
      kept.push({ at: now, e: e satisfies InstanceEvent });
      recent.current = kept.slice(-RECENT_MAX);
      setState((s) => {
        const list = s.services[e.applicationID];
        if (list === undefined) return s;
        return { ...s, services: { ...s.services, [e.applicationID]: applyInstance(list, e) } };
      });
    } else if (e.type === 'service') {
      if (only !== undefined && only !== e.applicationID) return;
      // a deleted service is dropped here: asking the root for it again would only get a 404
      if (e.action === 'deleted') {
        setState((s) => {
          const list = s.services[e.applicationID];
          return list === undefined ? s : { ...s, services: { ...s.services, [e.applicationID]: list.filter((x) => x.microserviceID !== e.microserviceID) } };
        });
      } else void loadServices(e.applicationID);
    } else if (e.type === 'application') {
      if (only === undefined) {
        if (e.action === 'deleted') setState((s) => ({ ...s, apps: s.apps?.filter((a) => a.applicationID !== e.applicationID) }));
        else reload();
      }
      else if (only === e.applicationID) {
        if (e.action === 'deleted') setState({ apps: [], services: {}, error: undefined, gone: true });
        else reload();
      }
    }
  });

  return { ...state, reload };
}

/** A count of live instances per state, e.g. "2 RUNNING, 1 REQUESTED". */
export function stateSummary(services: ServiceDoc[]): string {
  const counts = new Map<string, number>();
  for (const s of services) for (const i of liveInstances(s)) counts.set(i.status, (counts.get(i.status) ?? 0) + 1);
  if (counts.size === 0) return 'no instances';
  return [...counts].map(([k, n]) => `${n} ${k}`).join(', ');
}
