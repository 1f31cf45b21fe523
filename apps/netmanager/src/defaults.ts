/**
 * The real kernel parts: the Datapath (datapath.ts: VXLAN, routes, nftables, conntrack) and the
 * OverlayResolver (dns.ts), loaded when first needed (embedders and tests pass their own
 * factories instead and never load them).
 */
import type { DatapathFactory, ResolverFactory } from './ports.ts';

export async function defaultDatapath(): Promise<DatapathFactory> {
  const { Datapath } = await import('./datapath.ts');
  return (opts) => new Datapath(opts);
}

export async function defaultResolver(): Promise<ResolverFactory> {
  const { OverlayResolver } = await import('./dns.ts');
  return (opts) => new OverlayResolver(opts);
}
