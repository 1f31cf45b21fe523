/**
 * The dashboard's browser tests' common parts: Debian's chromium driven by playwright-core (the
 * flags of issue 11, a fresh user data dir per launch), console problems collected, a log-in
 * through the form, an axe-core check (serious and critical violations), and the tab's GET
 * /api/events requests (to count its event streams).
 */
import { createRequire } from 'node:module';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = process.env.OAK_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

/** playwright gives each launch a fresh user data dir of its own (and removes it at close) */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
}

/** A page whose console errors and warnings and page errors go to `problems`. */
export async function watchedPage(ctx: BrowserContext, problems: string[]): Promise<Page> {
  const page = await ctx.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  return page;
}

/** Logs in through the dashboard's form at `base`. */
export async function logIn(page: Page, base: string, user: string, password: string): Promise<void> {
  await page.goto(`${base}/`);
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('button', { name: 'Log out' }).waitFor();
}

/** axe-core in the page (the context needs bypassCSP): the serious and critical violations (ids and targets) */
export async function axe(page: Page): Promise<string[]> {
  await page.addScriptTag({ path: AXE });
  // the page's code as text: this file is type-checked without the DOM library
  return (await page.evaluate(`(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => v.id + ': ' + v.nodes.map((n) => JSON.stringify(n.target)).join(' '));
  })()`)) as string[];
}

/** Every GET /api/events the page makes, and whether it has ended (fetch streams included). */
export function eventStreams(page: Page): { list: { url: string; done: boolean }[]; open(): number } {
  const list: { url: string; done: boolean }[] = [];
  const byRequest = new Map<unknown, { url: string; done: boolean }>();
  page.on('request', (r) => {
    if (!r.url().includes('/api/events')) return;
    const e = { url: r.url(), done: false };
    byRequest.set(r, e);
    list.push(e);
  });
  const finish = (r: unknown): void => {
    const e = byRequest.get(r);
    if (e) e.done = true;
  };
  page.on('requestfinished', finish);
  page.on('requestfailed', finish);
  return { list, open: () => list.filter((e) => !e.done).length };
}
