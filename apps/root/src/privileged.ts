/**
 * `privileged: true` runs a workload with every capability (containers) or as root (processes)
 * on a worker started with --allow-privileged. Only an Admin may write such a service: the check
 * runs on every route that stores a service SLA (POST /api/application/, PUT /api/application/{id},
 * POST /api/service/, PUT /api/service/{id}), after validation and before anything is stored.
 */
import { OakError } from '@oak/contracts';
import type { Principal } from './auth/principal.ts';

/** Throws 403 OAK_NOT_ALLOWED naming the first privileged service when the user is not an Admin. */
export function assertPrivilegedAllowed(p: Principal, services: readonly { privileged?: boolean | undefined }[], pathOf: (i: number) => string): void {
  if (p.isAdmin) return;
  const i = services.findIndex((s) => s.privileged === true);
  if (i < 0) return;
  throw new OakError('OAK_NOT_ALLOWED', 'privileged: true is allowed only for an Admin (it gives the workload root on its worker)', {
    path: pathOf(i) === '' ? 'privileged' : `${pathOf(i)}.privileged`,
    hint: 'remove "privileged" (or set it to false), or ask an Admin to create this service; the worker must also run with --allow-privileged',
  });
}
