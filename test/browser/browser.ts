import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { buildWeb } from '../../scripts/build-web.js';

/** Debian's chromium (.ci/run installs it). */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = path.resolve('test-artifacts');
const DOCS = path.resolve('docs');

/** Without chromium the browser tests are skipped, except in CI where they must run. */
export const browserMissing = !existsSync(CHROMIUM) && !process.env.CI;
if (browserMissing) console.warn(`browser tests skipped: no Chromium at ${CHROMIUM} (apt-get install chromium)`);

/** `npm test` builds the pages first; a bare `vitest` run rebuilds them here if they are stale. */
export const ensurePagesBuilt = () => buildWeb({ quiet: true });

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

export interface IsolatedContext {
  context: BrowserContext;
  /** Every request, websocket or CSP-refused load a page tried beyond `origin`. */
  foreign: string[];
  /** Uncaught exceptions in the pages. */
  pageErrors: string[];
}

/**
 * A browser context whose pages are watched for any request beyond `origin`. With `block`, such
 * requests are also aborted, as on an offline machine; that routes every request through
 * Playwright, which costs about 100 ms per page load, so the timing tests only record.
 */
export async function isolatedContext(browser: Browser, origin: string, options: { block?: boolean } = {}): Promise<IsolatedContext> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const foreign: string[] = [];
  const pageErrors: string[] = [];
  const isForeign = (url: string) => !url.startsWith('data:') && new URL(url).origin !== origin;
  if (options.block) {
    await context.route((url) => isForeign(url.href), (route) => route.abort());
  }
  context.on('request', (request) => {
    if (isForeign(request.url())) foreign.push(request.url());
  });
  const wsOrigin = origin.replace(/^http/, 'ws');
  context.on('page', (page) => {
    page.on('websocket', (ws) => {
      if (new URL(ws.url()).origin !== wsOrigin) foreign.push(ws.url());
    });
    // The pages' Content-Security-Policy refuses foreign loads before they become requests.
    page.on('console', (message) => {
      if (message.type() === 'error' && message.text().includes('Content Security Policy')) foreign.push(message.text());
    });
    page.on('pageerror', (err) => pageErrors.push(String(err)));
    if (process.env.DEBUG_PAGES) page.on('console', (message) => console.log('[page]', message.type(), message.text()));
  });
  return { context, foreign, pageErrors };
}

/** Saves a screenshot to test-artifacts/ and, with UPDATE_DOCS_SCREENSHOTS=1, to docs/ as `docsName`. */
export async function screenshot(page: Page, name: string, docsName?: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  if (docsName && process.env.UPDATE_DOCS_SCREENSHOTS) {
    mkdirSync(DOCS, { recursive: true });
    copyFileSync(file, path.join(DOCS, docsName));
  }
}
