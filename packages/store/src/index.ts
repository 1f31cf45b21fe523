export type * from './types.ts';
export { createStore, newId } from './store.ts';
export { MIGRATIONS } from './migrations.ts';
