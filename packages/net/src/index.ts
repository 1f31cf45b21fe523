export { parseIPv4, formatIPv4, parseSubnet, formatSubnet, contains, overlaps, isPrivate, maskOf } from './ipv4.ts';
export type { Subnet } from './ipv4.ts';
export {
  DEFAULT_NAMESPACE, INSTANCE_POOL, OVERLAY_RANGES, bridgeMac, bridgePlan, defaultSubnet, tagOf, capacity, allocateAddress, inPlan,
  netnsName, vethName, isPlanNetns, addressOfNetns,
} from './plan.ts';
export type { BridgePlan } from './plan.ts';
export { nftRuleset, nftDeleteTable, mappingProblem } from './rules.ts';
export type { PortRule, RuleState, Protocol } from './rules.ts';
export { parseIPv6, formatIPv6, parseSubnet6, formatSubnet6, contains6, maskOf6 } from './ipv6.ts';
export type { Subnet6 } from './ipv6.ts';
export {
  Ipam, IpamError, DEFAULT_WORKER_POOL, DEFAULT_WORKER_PREFIX, DEFAULT_SERVICE_POOL, DEFAULT_SERVICE_POOL_V6, DEFAULT_WORKER_POOL_V6, MAX_KEY_LENGTH, MAX_INSTANCE, MAX_EXTRA_POOLS,
} from './ipam.ts';
export type { IpamConfig, IpamOptions, IpamState, IpamErrorCode, ServiceAddresses, InstanceAddresses } from './ipam.ts';
export { tunnelDevice, serviceTable, vtepMac, gatewayOf, gatewayOf6, canonicalIp, desiredPeerState, parseKernelState, diffPeerState } from './overlay.ts';
export type { RouteEntry, NeighEntry, FdbEntry, PeerState, OwnOverlay, DesiredPeers, PeerCommands } from './overlay.ts';
export { serviceRuleset, serviceTableDelete, trapAddress, TRAP_COMMENT, MAX_BACKENDS, MAX_SERVICES } from './services.ts';
export type { DesiredService, ServiceInstance, ServiceRuleOptions, ServiceRules } from './services.ts';
export { pickClosest } from './closest.ts';
export type { ClosestCandidate } from './closest.ts';
export { parseOverlayName, overlayNameOf, readUpstreams, dnsLabels, inZone, OVERLAY_ZONE, MAX_NAME_INSTANCE, MAX_UPSTREAMS } from './names.ts';
export type { OverlayName, OverlayService, ReadUpstreamsOptions } from './names.ts';
export { addressV6 } from './plan.ts';
export type { PlanOptions } from './plan.ts';
export type { OverlayRules } from './rules.ts';
