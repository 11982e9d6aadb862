// The cookie follows sliding renewal (issue 10, item 2): with SESSION_SAVE_EVERY_REQUEST, a request
// that moves the expiry refreshes the cookie's Max-Age, so the browser keeps sending it while the
// session is in use, past the 10 s it got at login.
import { randomBytes } from 'node:crypto';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep, startTestServer, type TestServer } from '../helpers/server.js';
import { browserMissing, ensurePagesBuilt, isolatedContext, launchChromium } from './browser.js';

let server: TestServer;
let origin: string;
let browser: Browser;

beforeAll(async () => {
  if (browserMissing) return;
  await ensurePagesBuilt();
  server = await startTestServer({ SESSION_SAVE_EVERY_REQUEST: 'true' });
  origin = new URL(server.url).origin;
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

describe.skipIf(browserMissing)('sliding renewal in the browser', () => {
  it('with a 10 s expiry and a request every 3 s, the app is still signed in past 20 s', { timeout: 60_000 }, async () => {
    const { context, foreign, pageErrors } = await isolatedContext(browser, origin);
    const page = await context.newPage();
    await page.goto(`${origin}/app/login`);
    await page.fill('input[name=username]', `slide${randomBytes(4).toString('hex')}`);
    await page.fill('input[name=password]', 'correct horse battery');
    await page.fill('input[name=expiry]', '10');
    await page.click('#register');
    await page.waitForURL(`${origin}/app`);
    const loggedIn = Date.now();

    // What the page's own script would send: the browser adds the cookie, if it still has one.
    const ask = () =>
      page.evaluate(async () => {
        const res = await fetch('/graphql', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"{ session { id } }"}' });
        return (await res.json()) as { data?: { session: { id: string } }; errors?: Array<{ extensions?: { code?: string } }> };
      });
    const first = await ask();
    expect(first.errors).toBeUndefined();
    for (let i = 1; Date.now() - loggedIn <= 20_000; i++) {
      await sleep(loggedIn + i * 3000 - Date.now());
      const answer = await ask();
      expect(answer.errors?.[0]?.extensions?.code, `request ${i}, ${Date.now() - loggedIn} ms after login`).toBeUndefined();
      expect(answer.data!.session.id).toBe(first.data!.session.id);
    }
    expect(new URL(page.url()).pathname).toBe('/app');
    expect((await context.cookies()).some((c) => c.name === 'sessionid')).toBe(true);
    await context.close();
    expect(foreign).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
