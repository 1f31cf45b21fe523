/**
 * The dashboard's views: one entry each, loaded on first visit (the first page stays small).
 * A view lives in its own folder, src/views/<name>/, and default-exports a component taking
 * ViewProps. `nav: false` routes without a nav entry (detail pages). `roles`: who sees it
 * (Admin always does); absent: every logged-in user.
 */
import type { ComponentType } from 'react';
import type { Role } from '../lib/api.ts';

export interface ViewProps {
  /** the `:name` parts of the path */
  params: Record<string, string>;
}

export interface ViewDef {
  path: string;
  label: string;
  load: () => Promise<{ default: ComponentType<ViewProps> }>;
  roles?: Role[];
  nav?: boolean;
}

const APP: Role[] = ['Organization_Admin', 'Application_Provider'];

export const views: ViewDef[] = [
  { path: '/applications', label: 'Applications', roles: APP, load: () => import('./applications/index.tsx') },
  { path: '/applications/new', label: 'New application', roles: APP, nav: false, load: () => import('./applications/create.tsx') },
  { path: '/applications/:id', label: 'Application', roles: APP, nav: false, load: () => import('./applications/detail.tsx') },
  { path: '/services/:id/instances/:n/logs', label: 'Logs', roles: APP, nav: false, load: () => import('./applications/logs.tsx') },
  // more views (infrastructure, administration) go here, one line each
  { path: '/infrastructure', label: 'Infrastructure', load: () => import('./infrastructure/index.tsx') },
  { path: '/services/:id/metrics', label: 'Readings', roles: APP, nav: false, load: () => import('./metrics/index.tsx') },
  { path: '/services/:id/instances/:n/metrics', label: 'Readings', roles: APP, nav: false, load: () => import('./metrics/index.tsx') },
  { path: '/admin/users', label: 'Users', roles: ['Organization_Admin'], load: () => import('./admin/users.tsx') },
  { path: '/admin/organizations', label: 'Organisations', roles: ['Organization_Admin'], load: () => import('./admin/organizations.tsx') },
  { path: '/admin/tokens', label: 'Join tokens', roles: ['Infrastructure_Provider'], load: () => import('./admin/tokens.tsx') },
  { path: '/admin/registries', label: 'Registries', roles: APP, load: () => import('./admin/registries.tsx') },
];
