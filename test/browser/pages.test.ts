import { randomBytes } from 'node:crypto';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sleep, startTestServer, type TestServer } from '../helpers/server.js';
import { browserMissing, ensurePagesBuilt, isolatedContext, launchChromium, screenshot, type IsolatedContext } from './browser.js';

const PASSWORD = 'correct horse battery';

let server: TestServer;
let origin: string;
let browser: Browser;
const contexts: IsolatedContext[] = [];

async function newContext(target = origin, options: { block?: boolean } = {}): Promise<IsolatedContext> {
  const isolated = await isolatedContext(browser, target, options);
  contexts.push(isolated);
  return isolated;
}

const newUsername = () => `web${randomBytes(4).toString('hex')}`;

/** Fills the login form; with `register` it creates the account first. Resolves on the session page. */
async function logIn(page: Page, username: string, options: { expiry?: string; register?: boolean; base?: string } = {}) {
  const base = options.base ?? origin;
  await page.goto(`${base}/app/login`);
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', PASSWORD);
  await page.fill('input[name=expiry]', options.expiry ?? '');
  await page.click(options.register ? '#register' : 'button[type=submit]');
  await page.waitForURL(`${base}/app`);
  await page.locator('#status', { hasText: 'connected' }).waitFor();
}

/** The session the context's HttpOnly cookie holds, as the server sees it (reading does not move the expiry). */
async function cookieSession(context: BrowserContext, target = server) {
  const cookie = (await context.cookies()).find((c) => c.name === 'sessionid');
  if (!cookie) throw new Error('no session cookie');
  const res = await target.gql('{ session { id expiryDate } }', {}, { token: cookie.value });
  if (res.errors) throw new Error(JSON.stringify(res.errors));
  return { token: cookie.value, id: res.data.session.id as string, expiresAt: Date.parse(res.data.session.expiryDate) };
}

/** Waits for the login page with the message for `reason`; returns when it was there (local clock). */
async function landsOnLoginPage(page: Page, reason: string, message: string, loginPath = '/app/login') {
  await page.waitForURL((url) => url.pathname === loginPath && url.searchParams.get('reason') === reason, { timeout: 8000 });
  await page.locator('#notice', { hasText: message }).waitFor({ timeout: 2000 });
  return Date.now();
}

beforeAll(async () => {
  if (browserMissing) return;
  await ensurePagesBuilt();
  server = await startTestServer({ LOGIN_URL: '/app/login' });
  origin = new URL(server.url).origin;
  browser = await launchChromium();
});
afterEach(async () => {
  for (const { context, foreign, pageErrors } of contexts.splice(0)) {
    await context.close();
    expect(foreign, 'requests beyond the server').toEqual([]);
    expect(pageErrors, 'uncaught errors in the page').toEqual([]);
  }
});
afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

describe.skipIf(browserMissing)('the frontend at /app', () => {
  it('lands on the login page with "Your session expired" no earlier than the expiry and within a second after it', async () => {
    const { context } = await newContext();
    const page = await context.newPage();
    await logIn(page, newUsername(), { expiry: '3', register: true });
    const { expiresAt } = await cookieSession(context);
    await expect.poll(() => page.textContent('#countdown')).toMatch(/^0:0[1-3]$/);
    await screenshot(page, 'app-session');

    const landed = await landsOnLoginPage(page, 'TIMEOUT', 'Your session expired');
    const navigationStart = await page.evaluate(() => performance.timeOrigin);
    expect(navigationStart).toBeGreaterThanOrEqual(expiresAt);
    expect(landed - expiresAt).toBeLessThan(1000);
    await screenshot(page, 'app-login-expired');
  });

  it('"stay signed in" renews the session and keeps the user on the page past the original expiry', async () => {
    const { context } = await newContext();
    const page = await context.newPage();
    await logIn(page, 'bob', { expiry: '4', register: true }); // the name shows in docs/app.png
    const original = await cookieSession(context);

    // A 4 s idle period gets its prompt 2 s before the end.
    await page.locator('#prompt', { hasText: 'Stay signed in?' }).waitFor({ timeout: 4000 });
    expect(Date.now()).toBeLessThan(original.expiresAt);
    await screenshot(page, 'app-expiring-soon', 'app.png');
    await page.click('#stay');
    await page.locator('#prompt').waitFor({ state: 'hidden' });

    await sleep(original.expiresAt + 1000 - Date.now());
    expect(new URL(page.url()).pathname).toBe('/app');
    expect(await page.textContent('#countdown')).not.toBe('0:00');
    const renewed = await cookieSession(context);
    expect(renewed.id).toBe(original.id);
    expect(renewed.expiresAt).toBeGreaterThan(original.expiresAt);
  });

  it('"log out everywhere" in a second browser sends the first to the login page (REVOKED)', async () => {
    const username = newUsername();
    const first = (await newContext()).context;
    const second = (await newContext()).context;
    const firstPage = await first.newPage();
    const secondPage = await second.newPage();
    await logIn(firstPage, username, { register: true });
    await logIn(secondPage, username);

    const clicked = Date.now();
    await secondPage.click('#logout-all');
    const landed = await landsOnLoginPage(firstPage, 'REVOKED', 'logged out from another session');
    expect(landed - clicked).toBeLessThan(2000); // the logoutAll request, the event, and a page load
    await landsOnLoginPage(secondPage, 'LOGGED_OUT', 'You have been logged out');
    await screenshot(firstPage, 'app-login-revoked');
  });

  it('serves its login page at LOGIN_URL, and "Log out" lands there', async () => {
    const other = await startTestServer({ LOGIN_URL: '/signin' });
    try {
      const otherOrigin = new URL(other.url).origin;
      const { context } = await newContext(otherOrigin);
      const page = await context.newPage();
      await page.goto(`${otherOrigin}/app`);
      await page.waitForURL(`${otherOrigin}/signin`);
      await page.fill('input[name=username]', newUsername());
      await page.fill('input[name=password]', PASSWORD);
      await page.click('#register');
      await page.waitForURL(`${otherOrigin}/app`);
      await page.locator('#status', { hasText: 'connected' }).waitFor();
      await page.click('#logout');
      await landsOnLoginPage(page, 'LOGGED_OUT', 'You have been logged out', '/signin');
      await screenshot(page, 'app-login-logged-out');
      // A reason it does not know, an inherited property name included, shows no notice.
      await page.goto(`${otherOrigin}/signin?reason=constructor`);
      await page.locator('#register').waitFor();
      expect(await page.locator('#notice').isHidden()).toBe(true);
    } finally {
      await other.stop();
    }
  });

  it('reconnects after a server restart and follows what happened meanwhile', async () => {
    const first = await startTestServer();
    const base = new URL(first.url).origin;
    const page = async (expiry: string) => {
      const { context } = await newContext(base);
      const p = await context.newPage();
      await logIn(p, newUsername(), { expiry, register: true, base });
      return { page: p, session: await cookieSession(context, first) };
    };
    let second: TestServer | undefined;
    try {
      const lasting = await page('300');
      const loggedOut = await page('300');
      const expiring = await page('3');

      await first.stop();
      await expiring.page.locator('#status', { hasText: 'reconnecting' }).waitFor();
      // Meanwhile one session is logged out through another process, and one expires.
      const elsewhere = await startTestServer({}, first.mongoUri);
      await elsewhere.gql('mutation { logout }', {}, { token: loggedOut.session.token });
      await elsewhere.stop();
      await sleep(expiring.session.expiresAt + 300 - Date.now());
      expect(new URL(expiring.page.url()).pathname).toBe('/app'); // nothing could tell it while the server was down

      second = await startTestServer({ PORT: new URL(first.url).port }, first.mongoUri);
      await landsOnLoginPage(expiring.page, 'TIMEOUT', 'Your session expired');
      await landsOnLoginPage(loggedOut.page, 'LOGGED_OUT', 'You have been logged out');
      await lasting.page.locator('#status', { hasText: 'connected' }).waitFor({ timeout: 8000 });
      expect(new URL(lasting.page.url()).pathname).toBe('/app');
    } finally {
      await second?.stop();
    }
  });
});

describe.skipIf(browserMissing)('GraphiQL at /graphiql', () => {
  const editorValue = (page: Page, selector: string) =>
    page.evaluate((s) => (document.querySelector(s) as unknown as { CodeMirror: { getValue(): string } }).CodeMirror.getValue(), selector);
  const response = (page: Page) => editorValue(page, '.graphiql-response .CodeMirror');
  const run = async (page: Page, operation: string) => {
    await page.click('.graphiql-execute-button');
    await page.getByRole('menuitem', { name: operation, exact: true }).click();
  };

  it('loads from the server alone, walks through register, login, setExpiry and session, shows subscription events and the docs', async () => {
    const { context } = await newContext(origin, { block: true });
    const page = await context.newPage();
    await page.goto(`${origin}/graphql`, { waitUntil: 'commit' }); // a browser opening the endpoint gets GraphiQL
    await page.waitForURL(`${origin}/graphiql`);
    await page.locator('.graphiql-query-editor .CodeMirror').waitFor();
    expect(await editorValue(page, '.graphiql-query-editor .CodeMirror')).toContain('mutation Register');

    await run(page, 'Register');
    await expect.poll(() => response(page)).toContain('"username": "alice"');
    await run(page, 'Login');
    await expect.poll(() => response(page)).toContain('"token"');
    const token = JSON.parse(await response(page)).data.login.token as string;
    // Nothing typed is kept where every script of this origin (and whoever has the machine) could
    // read it: GraphiQL's default, localStorage, kept the walkthrough's documents, passwords and all.
    expect(await page.evaluate(() => ({ ...localStorage }))).toEqual({});

    // The headers editor is open by default (the walkthrough says to paste the token there).
    await page.evaluate((value) => {
      const editor = document.querySelector('.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror');
      (editor as unknown as { CodeMirror: { setValue(v: string): void } }).CodeMirror.setValue(value);
    }, JSON.stringify({ Authorization: `Bearer ${token}` }));
    await run(page, 'SetExpiry');
    await expect.poll(() => response(page)).toContain('"expiryAge": 30');
    await run(page, 'Session');
    await expect.poll(() => response(page)).toContain('"policy": "SECONDS"');

    await run(page, 'SessionEvents');
    await expect.poll(() => server.hub.subscribedCount).toBeGreaterThan(0);
    const touched = await server.gql('mutation { touch { expiryDate } }', {}, { token });
    await expect.poll(() => response(page)).toContain('"kind": "EXPIRY_CHANGED"');
    expect(await response(page)).toContain(touched.data.touch.expiryDate);

    await page.click('.graphiql-sidebar button[aria-label="Show Documentation Explorer"]');
    await page.locator('.graphiql-doc-explorer a', { hasText: 'Subscription' }).first().click();
    await page.locator('.graphiql-doc-explorer', { hasText: 'Events about the session this socket authenticated with' }).waitFor();
    await screenshot(page, 'graphiql', 'graphiql.png');

    // GraphiQL's own subscription ends with the session: the terminal event reaches it too.
    await server.gql('mutation { logout }', {}, { token });
    await expect.poll(() => response(page)).toContain('"kind": "LOGGED_OUT"');
  });
});
