export type * from './types.ts';
export { createStore, newId } from './store.ts';
export { passedSteps } from './passed.ts';
export { MIGRATIONS } from './migrations.ts';
export { serviceFingerprint } from './fingerprint.ts';
export { CHANNEL_RE, MAX_PAYLOAD_BYTES } from './notify.ts';
