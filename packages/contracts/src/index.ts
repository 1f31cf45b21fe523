export * from './states.ts';
export * from './naming.ts';
export * from './sla.ts';
export * from './errors.ts';
export * from './api.ts';
export * from './protocol.ts';
export * from './link.ts';
