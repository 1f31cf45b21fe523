/**
 * The web dashboard (apps/dashboard, docs/dashboard.md) served by the root itself at `/`: no
 * second component to install. Public like any login page: it holds no data, everything it shows
 * comes from the authenticated API.
 *
 * - `/assets/*`: the build's content-hashed files, cached for a year (`immutable`); the build
 *   writes gzip copies next to them, sent to clients that accept gzip. @fastify/static resolves
 *   paths inside the assets folder only (traversal and dot files are refused).
 * - every other GET outside `/api`: index.html, never cached (so a new build is picked up at once),
 *   which the dashboard's router reads (deep links, reloads).
 * - `/api/...` paths that match no route keep the API's 404 in the error shape.
 *
 * Every answer carries a Content-Security-Policy allowing only the root's own scripts, styles
 * and connections (no inline script, no eval), and refuses framing.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import { OakError } from '@oak/contracts';
import type { FastifyInstance, FastifyReply } from 'fastify';

export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** apps/dashboard/dist, seen from the root's source (apps/root/src/plugins) or a bundle (apps/<x>/dist). */
export function defaultDashboardDir(): string | undefined {
  for (const rel of ['../../dashboard/dist/', '../../../dashboard/dist/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(join(dir, 'index.html'))) return dir;
  }
  return undefined;
}

function secure(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY');
}

/** Registers the dashboard routes; `dir` undefined: `/` answers 404 saying how to build it. */
export async function registerDashboard(app: FastifyInstance, given: string | undefined): Promise<void> {
  const dir = given !== undefined && existsSync(join(given, 'index.html')) ? given : undefined;
  if (dir !== undefined) {
    await app.register(fastifyStatic, {
      root: join(dir, 'assets'),
      prefix: '/assets/',
      decorateReply: false,
      index: false,
      dotfiles: 'deny',
      preCompressed: true,
      cacheControl: true,
      maxAge: 365 * 24 * 3600 * 1000,
      immutable: true,
      setHeaders: (res) => {
        res.setHeader('content-security-policy', DASHBOARD_CSP);
        res.setHeader('x-content-type-options', 'nosniff');
      },
    });
  }
  const page = async (url: string, reply: FastifyReply): Promise<FastifyReply> => {
    const path = url.split('?')[0] ?? '';
    if (path === '/api' || path.startsWith('/api/')) {
      throw new OakError('OAK_NOT_FOUND', `no route GET ${path}`, { hint: 'the API is described at /api/docs' });
    }
    if (dir === undefined) {
      throw new OakError('OAK_NOT_FOUND', 'the dashboard is not built', { hint: 'run `node scripts/build.mjs` (make up and make test do it), then reload' });
    }
    const html = await readFile(join(dir, 'index.html'));
    return secure(reply).header('cache-control', 'no-cache').type('text/html; charset=utf-8').send(html);
  };
  app.get('/', { schema: { hide: true } }, (req, reply) => page(req.url, reply));
  app.get('/*', { schema: { hide: true } }, (req, reply) => page(req.url, reply));
}
