/**
 * Instance events merged into service lists (data.ts), pure: an event replaces an instance unless
 * the list holds a newer one (updated_at), and a list that was on its way while events arrived
 * gets those events applied again on top of it.
 */
import type { OakEvent, ServiceDoc } from '@oak/contracts';

export type InstanceEvent = Extract<OakEvent, { type: 'instance' }>;
/** an instance event and when this tab received it (ms) */
export interface Received {
  at: number;
  e: InstanceEvent;
}

/** The services with one instance replaced by the event's, unless what they hold is newer. */
export function applyInstance(list: ServiceDoc[], e: InstanceEvent): ServiceDoc[] {
  return list.map((svc) => {
    if (svc.microserviceID !== e.microserviceID) return svc;
    const had = svc.instance_list.find((i) => i.instance_number === e.instance.instance_number);
    if (had !== undefined && had.updated_at > e.instance.updated_at) return svc;
    const others = svc.instance_list.filter((i) => i.instance_number !== e.instance.instance_number);
    return { ...svc, instance_list: [...others, e.instance].sort((a, b) => a.instance_number - b.instance_number) };
  });
}

/** `list` (the services of application `appId`, asked for at `since`) with the events received since then. */
export function replayInstances(list: ServiceDoc[], recent: readonly Received[], appId: string, since: number): ServiceDoc[] {
  let out = list;
  for (const r of recent) if (r.at >= since && r.e.applicationID === appId) out = applyInstance(out, r.e);
  return out;
}
