export { parseIPv4, formatIPv4, parseSubnet, formatSubnet, contains, overlaps, isPrivate, maskOf } from './ipv4.ts';
export type { Subnet } from './ipv4.ts';
export {
  DEFAULT_NAMESPACE, INSTANCE_POOL, OVERLAY_RANGES, bridgePlan, defaultSubnet, tagOf, capacity, allocateAddress, inPlan,
  netnsName, vethName, isPlanNetns, addressOfNetns,
} from './plan.ts';
export type { BridgePlan } from './plan.ts';
export { nftRuleset, nftDeleteTable, mappingProblem } from './rules.ts';
export type { PortRule, RuleState, Protocol } from './rules.ts';
