export * from './pki.ts';
export * from './store.ts';
export * from './tls.ts';
