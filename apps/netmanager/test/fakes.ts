/** Fakes of the kernel parts for the NetManager's tests: they record what they were told. */
import type { OverlayPeer } from '@oak/contracts';
import type { DatapathFactory, DatapathOptions, DatapathPort, DatapathService, ResolverFactory, ResolverLookup, ResolverPort } from '../src/ports.ts';

export class FakeDatapath implements DatapathPort {
  readonly opts: DatapathOptions;
  readonly mtu = 1450;
  readonly tunnelDevice = 'oakxh2test';
  inits = 0;
  closed = 0;
  cleaned = 0;
  peers: OverlayPeer[] = [];
  services: DatapathService[] = [];
  serviceCalls = 0;
  forgotten: string[] = [];
  unknown: ((ip: string) => void) | undefined;

  constructor(opts: DatapathOptions) {
    this.opts = opts;
  }
  init(): void { this.inits++; }
  setPeers(peers: OverlayPeer[]): void { this.peers = peers; }
  setServices(services: DatapathService[]): void {
    this.services = services;
    this.serviceCalls++;
  }
  forgetInstance(nsip: string): void { this.forgotten.push(nsip); }
  watchUnknown(cb: (ip: string) => void): () => void {
    this.unknown = cb;
    return () => { this.unknown = undefined; };
  }
  close(): void { this.closed++; }
  clean(): void { this.cleaned++; }
}

export function fakeDatapaths(): { factory: DatapathFactory; all: FakeDatapath[]; last: () => FakeDatapath } {
  const all: FakeDatapath[] = [];
  return {
    factory: (opts) => {
      const d = new FakeDatapath(opts);
      all.push(d);
      return d;
    },
    all,
    last: () => {
      const d = all.at(-1);
      if (d === undefined) throw new Error('no datapath made yet');
      return d;
    },
  };
}

export class FakeResolver implements ResolverPort {
  readonly lookup: ResolverLookup;
  readonly upstreams: string[];
  listening: Array<{ host: string; port: number }> = [];
  closed = 0;
  constructor(lookup: ResolverLookup, upstreams: string[]) {
    this.lookup = lookup;
    this.upstreams = upstreams;
  }
  async listen(opts: { host: string; port: number }): Promise<void> { this.listening.push(opts); }
  close(): void { this.closed++; }
}

export function fakeResolvers(): { factory: ResolverFactory; all: FakeResolver[] } {
  const all: FakeResolver[] = [];
  return {
    factory: (opts) => {
      const r = new FakeResolver(opts.lookup, opts.upstreams);
      all.push(r);
      return r;
    },
    all,
  };
}
