// Cross-site attacks from a page of another origin (issue 9, item 2): it must not be able to open a
// websocket that the browser authenticates with the session cookie, nor frame the pages.
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CloseCode } from 'graphql-ws';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { newUserSession, startTestServer, type TestServer } from '../helpers/server.js';
import { browserMissing, ensurePagesBuilt, launchChromium } from './browser.js';

const PASSWORD = 'correct horse battery';
const GRAPHQL_TRANSPORT_WS = 'graphql-transport-ws';

interface ProbeResult {
  /** The close code the page saw (1000: the probe closed it itself after `complete`). */
  code: number;
  reason: string;
  /** Every graphql-ws message the server sent, in order. */
  messages: Array<{ type: string; id?: string; payload?: any }>;
  timedOut?: boolean;
}

/**
 * The script of both pages, as plain JavaScript (it runs as is in the page): opens a graphql-ws
 * socket, sends connection_init with `token` in its payload if there is one (none: the browser's
 * cookie is the only credential), asks `{ session { id } }` once acknowledged, and resolves with
 * how the socket closed and what came in.
 */
const PROBE = `(url, token) => new Promise((resolve) => {
  const messages = [];
  const socket = new WebSocket(url, '${GRAPHQL_TRANSPORT_WS}');
  const finish = (result) => { clearTimeout(timer); resolve({ ...result, messages }); };
  const timer = setTimeout(() => { finish({ code: 0, reason: '', timedOut: true }); socket.close(); }, 8000);
  socket.onopen = () => socket.send(JSON.stringify(token ? { type: 'connection_init', payload: { token } } : { type: 'connection_init' }));
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    messages.push(message);
    if (message.type === 'connection_ack') socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: '{ session { id } }' } }));
    if (message.type === 'complete' || message.type === 'error') socket.close(1000);
  };
  socket.onclose = (event) => finish({ code: event.code, reason: event.reason });
})`;

/** The attacker's page: served from another origin, it runs the probe at once, with a token only if its URL's fragment has one. */
const attackPage = (wsUrl: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>another origin</title></head><body>
<script>
window.result = (${PROBE})(${JSON.stringify(wsUrl)}, new URLSearchParams(location.hash.slice(1)).get('token'));
</script>
</body></html>`;

/** Clickjacking: the attacker's page frames the API's pages, and a page of its own as the control. */
const FRAMED = ['/app', '/graphiql'];
const framingPage = (apiOrigin: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>another origin</title></head><body>
${FRAMED.map((p) => `<iframe name="${p.slice(1)}" src="${apiOrigin}${p}" width="800" height="600"></iframe>`).join('\n')}
<iframe name="control" src="/control"></iframe>
</body></html>`;
const CONTROL_PAGE = '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>control</title></head><body><p id="loaded">framed</p></body></html>';

let server: TestServer;
/** The API's origin, e.g. http://127.0.0.1:41234, where /app is served. */
let origin: string;
let wsUrl: string;
/** A second local origin: same site as the API (127.0.0.1), another port. */
let elsewhere: Server;
let elsewhereOrigin: string;

beforeAll(async () => {
  server = await startTestServer();
  origin = new URL(server.url).origin;
  wsUrl = server.url.replace(/^http/, 'ws');
  const pages: Record<string, () => string> = { '/': () => attackPage(wsUrl), '/frames': () => framingPage(origin), '/control': () => CONTROL_PAGE };
  elsewhere = createServer((req, res) => {
    const page = pages[req.url ?? ''];
    if (!page) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(page());
  });
  await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve));
  elsewhereOrigin = `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => (elsewhere ? elsewhere.close(resolve) : resolve(undefined)));
  await server?.stop();
});

/**
 * A graphql-ws socket opened by Node with exactly these upgrade headers (none added: `ws` sends
 * no Origin unless told), run through the same steps as the page's probe.
 */
function rawProbe(headers: Record<string, string>, token: string | null = null, url = wsUrl): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const messages: ProbeResult['messages'] = [];
    const socket = new WebSocket(url, GRAPHQL_TRANSPORT_WS, { headers });
    const timer = setTimeout(() => {
      socket.terminate();
      resolve({ code: 0, reason: '', messages, timedOut: true });
    }, 8000);
    socket.on('error', reject);
    socket.on('open', () => socket.send(JSON.stringify(token ? { type: 'connection_init', payload: { token } } : { type: 'connection_init' })));
    socket.on('message', (data) => {
      const message = JSON.parse(String(data)) as ProbeResult['messages'][number];
      messages.push(message);
      if (message.type === 'connection_ack') socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: '{ session { id } }' } }));
      if (message.type === 'complete' || message.type === 'error') socket.close(1000);
    });
    socket.on('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ code, reason: String(reason), messages });
    });
  });
}

/** The session id the probe was answered with, if any. */
const answeredSession = (result: ProbeResult) => result.messages.find((m) => m.type === 'next')?.payload?.data?.session?.id as string | undefined;

function expectRefused(result: ProbeResult) {
  expect(result, 'closed with 4403 Forbidden before any message').toEqual({ code: CloseCode.Forbidden, reason: expect.any(String), messages: [] });
}

function expectServed(result: ProbeResult, sessionId: string) {
  expect(answeredSession(result), JSON.stringify(result)).toBe(sessionId);
  expect(result.code).toBe(1000);
}

describe('a websocket authenticated by the session cookie, without a browser', () => {
  let token: string;
  let sessionId: string;
  beforeAll(async () => {
    const user = await newUserSession(server);
    token = user.token;
    sessionId = user.session.id as string;
  });
  const cookie = () => `sessionid=${token}`;

  it('is refused with 4403 from another origin, from `null`, and from several origins', async () => {
    expectRefused(await rawProbe({ cookie: cookie(), origin: 'https://evil.example' }));
    expectRefused(await rawProbe({ cookie: cookie(), origin: 'null' }));
    expectRefused(await rawProbe({ cookie: cookie(), origin: `${origin}.evil.example` }));
    expectRefused(await rawProbe({ cookie: cookie(), origin: `${origin}, https://evil.example` }));
    expectRefused(await rawProbe({ cookie: cookie(), origin: elsewhereOrigin }));
  });

  it('is served from the server’s own origin, and without an Origin header (not a browser)', async () => {
    expectServed(await rawProbe({ cookie: cookie(), origin }), sessionId);
    expectServed(await rawProbe({ cookie: cookie(), origin: origin.toUpperCase() }), sessionId);
    expectServed(await rawProbe({ cookie: cookie() }), sessionId);
  });

  it('is served from anywhere when it authenticates with a token in connectionParams instead', async () => {
    expectServed(await rawProbe({ origin: 'https://evil.example' }, token), sessionId);
    expectServed(await rawProbe({ origin: 'null' }, token), sessionId);
    expectServed(await rawProbe({ cookie: cookie(), origin: 'https://evil.example' }, token), sessionId);
  });

  it('is served from an origin in ALLOWED_ORIGINS', async () => {
    const listed = await startTestServer({ ALLOWED_ORIGINS: `https://app.example.com,${elsewhereOrigin}` }, server.mongoUri);
    try {
      const probe = (headers: Record<string, string>) => rawProbe(headers, null, listed.url.replace(/^http/, 'ws'));
      expectServed(await probe({ cookie: cookie(), origin: 'https://app.example.com' }), sessionId);
      expectServed(await probe({ cookie: cookie(), origin: elsewhereOrigin }), sessionId);
      expectRefused(await probe({ cookie: cookie(), origin: 'https://evil.example' }));
    } finally {
      await listed.stop();
    }
  });
});

describe.skipIf(browserMissing)('in Chromium: a page of another origin and the session cookie', () => {
  let browser: Browser;
  let context: BrowserContext;
  const pageErrors: string[] = [];
  let sessionId: string;
  let token: string;

  beforeAll(async () => {
    await ensurePagesBuilt();
    browser = await launchChromium();
    context = await browser.newContext();
    context.on('page', (page) => page.on('pageerror', (err) => pageErrors.push(String(err))));
    // Log in through the app's own page: the browser now holds the HttpOnly, SameSite=Lax cookie.
    const page = await context.newPage();
    await page.goto(`${origin}/app/login`);
    await page.fill('input[name=username]', `origin${randomBytes(4).toString('hex')}`);
    await page.fill('input[name=password]', PASSWORD);
    await page.fill('input[name=expiry]', '');
    await page.click('#register');
    await page.waitForURL(`${origin}/app`);
    await page.locator('#status', { hasText: 'connected' }).waitFor();
    await page.close();
    const cookie = (await context.cookies(origin)).find((c) => c.name === 'sessionid');
    if (!cookie) throw new Error('no session cookie after logging in');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax' });
    token = cookie.value;
    const res = await server.gql('{ session { id } }', {}, { token });
    if (res.errors) throw new Error(JSON.stringify(res.errors));
    sessionId = res.data.session.id as string;
  });
  afterEach(() => {
    expect(pageErrors.splice(0), 'uncaught errors in the pages').toEqual([]);
  });
  afterAll(async () => {
    await context?.close();
    await browser?.close();
  });

  const openPage = async (url: string): Promise<Page> => {
    const page = await context.newPage();
    await page.goto(url);
    return page;
  };

  it('the app’s own page gets the session over a socket authenticated by the cookie alone', async () => {
    const page = await openPage(`${origin}/app`);
    await page.locator('#status', { hasText: 'connected' }).waitFor();
    const result = (await page.evaluate(`(${PROBE})(${JSON.stringify(wsUrl)}, null)`)) as ProbeResult;
    expectServed(result, sessionId);
    await page.close();
  });

  it('a page served from a second local origin (same site, another port) is refused with 4403 and gets no data', async () => {
    const page = await openPage(`${elsewhereOrigin}/`);
    const result = (await page.evaluate('window.result')) as ProbeResult;
    // 4401 here would mean the browser did not send the cookie, and so that the test tests nothing.
    expect(result.code, `the cookie-authenticated socket from ${elsewhereOrigin}: ${JSON.stringify(result)}`).toBe(CloseCode.Forbidden);
    expect(result.messages, 'no connection_ack, no data').toEqual([]);
    // The session is untouched and still usable.
    const res = await server.gql('{ session { id } }', {}, { token });
    expect(res.data?.session?.id).toBe(sessionId);
    await page.close();
  });

  it('a page of another origin cannot frame the app or GraphiQL (no clickjacking), though it frames its own page', async () => {
    const page = await context.newPage();
    const sockets: string[] = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await page.goto(`${elsewhereOrigin}/frames`, { waitUntil: 'load' });
    const control = page.frame({ name: 'control' });
    expect(await control?.locator('#loaded').textContent(), 'the way this test sees a framed page works').toBe('framed');
    for (const framed of FRAMED) {
      const frame = page.frame({ name: framed.slice(1) });
      expect(frame, framed).toBeTruthy();
      // Chromium shows its own error page in place of a refused frame.
      expect(frame!.url(), `${framed} framed by ${elsewhereOrigin}`).not.toContain(origin);
      expect(await frame!.locator('#status, #register, .graphiql-container').count(), framed).toBe(0);
    }
    // Nothing in a frame came alive with the user's cookie.
    expect(sockets).toEqual([]);
    await page.close();
  });

  it('the same page may use a token it was given (connectionParams carry no ambient credential)', async () => {
    const page = await openPage(`${elsewhereOrigin}/#token=${encodeURIComponent(token)}`);
    const result = (await page.evaluate('window.result')) as ProbeResult;
    expectServed(result, sessionId);
    await page.close();
  });
});
