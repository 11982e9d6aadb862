import { ApiError, config, eventsClient, gql, loginPageUrl } from './api.js';

interface SessionInfo {
  id: string;
  expiryDate: string;
  policy: 'SECONDS' | 'BROWSER_CLOSE' | 'DEFAULT' | 'DATE';
  policySeconds: number | null;
  expireAtBrowserClose: boolean;
  limitedBy: 'POLICY' | 'MAX_LIFETIME';
  serverTime: string;
}

interface SessionEvent {
  kind: 'EXPIRING_SOON' | 'EXPIRY_CHANGED' | 'EXPIRED' | 'LOGGED_OUT' | 'REVOKED';
  expiresAt: string;
  serverTime: string;
  reason: string | null;
  redirectTo: string | null;
}

const SESSION = `{ me { username } session { id expiryDate policy policySeconds expireAtBrowserClose limitedBy serverTime } }`;
const EVENTS = `subscription Events($lead: Int) {
  sessionEvents(expiringSoonLead: $lead) { kind expiresAt serverTime reason redirectTo }
}`;

const POLICY: Record<SessionInfo['policy'], (s: SessionInfo) => string> = {
  SECONDS: (s) => `${s.policySeconds} s of inactivity`,
  BROWSER_CLOSE: () => 'until the browser closes',
  DEFAULT: (s) => (s.expireAtBrowserClose ? "the server's default: until the browser closes" : "the server's default"),
  DATE: () => 'a fixed time',
};

/** "1:05", "2:03:04", "13 d 23:59:59" for a number of milliseconds. */
function formatLeft(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const d = Math.floor(total / 86400);
  const h = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  if (d) return `${d} d ${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}:${s}`;
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

export async function showSession(root: HTMLElement): Promise<void> {
  document.title = 'Session · Sessions';
  root.innerHTML = `
    <h1>Sessions</h1>
    <section class="card" id="session" aria-busy="true">
      <p>Signed in as <strong id="username">…</strong></p>
      <p class="countdown-label">Session expires in</p>
      <p id="countdown" class="countdown">…</p>
      <p id="prompt" class="prompt" role="alertdialog" aria-live="assertive" hidden>
        <span id="prompt-text"></span>
        <button type="button" id="stay">Stay signed in</button>
      </p>
      <dl>
        <dt>Expiry</dt><dd id="policy"></dd>
        <dt>Expires at</dt><dd id="expires-at"></dd>
        <dt>Live updates</dt><dd id="status">connecting…</dd>
      </dl>
      <div class="buttons">
        <button type="button" id="logout">Log out</button>
        <button type="button" id="logout-all" class="secondary">Log out everywhere</button>
      </div>
    </section>
    ${config.graphiqlPath ? `<p class="footer"><a href="${config.graphiqlPath}">GraphiQL</a></p>` : ''}`;
  const $ = (id: string) => root.querySelector<HTMLElement>(`#${id}`)!;

  // The countdown runs on the server's clock: offset = serverTime - local clock when it arrived.
  let expiresAt = 0;
  let offset = 0;
  let leaving = false;
  const sync = (expiry: string, serverTime: string) => {
    expiresAt = Date.parse(expiry);
    offset = Date.parse(serverTime) - Date.now();
    $('expires-at').textContent = new Date(expiresAt).toLocaleString();
  };
  const left = () => expiresAt - (Date.now() + offset);

  /** Leaves for the login page at once; the server's terminal event or error says why. */
  const leave = (reason: string | null, loginUrl?: string | null) => {
    if (leaving) return;
    leaving = true;
    location.replace(loginPageUrl(reason, loginUrl ?? config.loginUrl));
  };
  const leaveOnError = (err: unknown): boolean => {
    if (!(err instanceof ApiError)) return false;
    const loginUrl = err.extensions.loginUrl as string | undefined;
    if (err.code === 'SESSION_EXPIRED') leave('TIMEOUT', loginUrl);
    else if (err.code === 'SESSION_ENDED') leave((err.extensions.reason as string | undefined) ?? 'LOGGED_OUT', loginUrl);
    // The browser drops the cookie when its Max-Age (the expiry) runs out: past the expiry, that means it expired.
    else if (err.code === 'UNAUTHENTICATED') leave(expiresAt && left() <= 0 ? 'TIMEOUT' : null, loginUrl);
    else return false;
    return true;
  };

  /** Reads the session; on the first load a failure other than "not logged in" is retried. */
  const load = async (): Promise<SessionInfo | null> => {
    try {
      const data = await gql<{ me: { username: string }; session: SessionInfo }>(SESSION);
      $('username').textContent = data.me.username;
      $('policy').textContent = POLICY[data.session.policy](data.session);
      sync(data.session.expiryDate, data.session.serverTime);
      return data.session;
    } catch (err) {
      if (!leaveOnError(err)) $('status').textContent = 'server unreachable';
      return null;
    }
  };

  let session = await load();
  while (!session && !leaving) {
    await new Promise((resolve) => setTimeout(resolve, 2000));
    session = await load();
  }
  if (!session) return;
  $('session').removeAttribute('aria-busy');

  const prompt = $('prompt');
  const stay = $('stay') as HTMLButtonElement;
  const render = () => {
    const text = formatLeft(left());
    $('countdown').textContent = text;
    if (!prompt.hidden) {
      $('prompt-text').textContent = stay.hidden
        ? `This session cannot be extended: it ends in ${text}.`
        : `Your session expires in ${text}. Stay signed in?`;
    }
  };
  render();
  setInterval(render, 200);

  const showPrompt = () => {
    stay.hidden = session.policy === 'DATE';
    prompt.hidden = false;
    render();
  };
  stay.addEventListener('click', async () => {
    stay.disabled = true;
    try {
      const before = expiresAt;
      const { touch } = await gql<{ touch: { expiryDate: string; serverTime: string } }>('mutation { touch { expiryDate serverTime } }');
      sync(touch.expiryDate, touch.serverTime);
      if (expiresAt > before) prompt.hidden = true;
      else stay.hidden = true; // the maximum lifetime is reached
      render();
    } catch (err) {
      leaveOnError(err);
    } finally {
      stay.disabled = false;
    }
  });

  const logout = async (mutation: string) => {
    try {
      await gql(mutation);
      leave('LOGGED_OUT');
    } catch (err) {
      leaveOnError(err);
    }
  };
  $('logout').addEventListener('click', () => void logout('mutation { logout }'));
  $('logout-all').addEventListener('click', () => void logout('mutation { logoutAll }'));

  const client = eventsClient({
    connected: (wasRetry) => {
      $('status').textContent = 'connected';
      // The expiry may have moved while the socket was down; an ended session also yields its terminal event.
      if (wasRetry) void load();
    },
    closed: () => {
      if (!leaving) $('status').textContent = 'reconnecting…';
    },
  });
  // A "stay signed in?" prompt a minute before the end, or halfway through a short idle period.
  const lead = session.policy === 'SECONDS' ? Math.min(60, Math.floor((session.policySeconds ?? 0) / 2)) : 60;
  client.subscribe<{ sessionEvents: SessionEvent }>(
    { query: EVENTS, variables: { lead } },
    {
      next: ({ data }) => {
        const event = data?.sessionEvents;
        if (!event) return;
        if (event.kind === 'EXPIRING_SOON') {
          sync(event.expiresAt, event.serverTime);
          showPrompt();
        } else if (event.kind === 'EXPIRY_CHANGED') {
          sync(event.expiresAt, event.serverTime);
          prompt.hidden = true;
          render();
        } else {
          leave(event.reason ?? event.kind, event.redirectTo);
        }
      },
      // Refused (4401) or failed without a terminal event: ask over HTTP what became of the session.
      error: () => {
        if (leaving) return;
        $('status').textContent = 'disconnected';
        void load();
      },
      complete: () => {},
    },
  );
}
