import { ApiError, config, gql } from './api.js';

/** Why the user is back on the login page: the `reason` the session page puts in the URL (a Map, not an object: `?reason=constructor` must find nothing). */
const ENDED = new Map<string, string>([
  ['TIMEOUT', 'Your session expired. Please log in again.'],
  ['BROWSER_CLOSED', 'Your session ended because the browser was closed.'],
  ['LOGGED_OUT', 'You have been logged out.'],
  ['REVOKED', 'You were logged out from another session ("log out everywhere").'],
]);

const LOGIN = `mutation Login($username: String!, $password: String!, $expiry: ExpiryInput) {
  login(username: $username, password: $password, expiry: $expiry, cookie: true) { user { username } }
}`;
const REGISTER = `mutation Register($username: String!, $password: String!) {
  register(username: $username, password: $password) { id }
}`;

export function showLogin(root: HTMLElement): void {
  document.title = 'Log in · Sessions';
  root.innerHTML = `
    <h1>Sessions</h1>
    <p id="notice" class="notice" role="status" hidden></p>
    <form id="login" class="card">
      <label>Username <input name="username" autocomplete="username" required></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" required minlength="8"></label>
      <label>Session expiry in seconds
        <input name="expiry" type="number" min="0" step="1" value="30">
        <small>Expires after this many seconds of inactivity. 0: when the browser closes. Empty: the server's default.</small>
      </label>
      <p id="error" class="error" role="alert" hidden></p>
      <div class="buttons">
        <button type="submit">Log in</button>
        <button type="button" id="register" class="secondary">Create account</button>
      </div>
    </form>
    ${config.graphiqlPath ? `<p class="footer"><a href="${config.graphiqlPath}">GraphiQL</a></p>` : ''}`;

  const form = root.querySelector<HTMLFormElement>('#login')!;
  const notice = root.querySelector<HTMLElement>('#notice')!;
  const error = root.querySelector<HTMLElement>('#error')!;
  const register = root.querySelector<HTMLButtonElement>('#register')!;
  register.hidden = !config.registrationEnabled;

  const reason = new URLSearchParams(location.search).get('reason');
  const message = reason ? ENDED.get(reason) : undefined;
  if (reason && message) {
    notice.textContent = message;
    notice.dataset.reason = reason;
    notice.hidden = false;
  }

  const submit = async (createAccount: boolean) => {
    if (!form.reportValidity()) return;
    const data = new FormData(form);
    const username = String(data.get('username'));
    const password = String(data.get('password'));
    const expiry = String(data.get('expiry')).trim();
    error.hidden = true;
    for (const button of root.querySelectorAll('button')) button.disabled = true;
    try {
      if (createAccount) await gql(REGISTER, { username, password });
      await gql(LOGIN, { username, password, expiry: expiry === '' ? null : { seconds: Number(expiry) } });
      location.assign(config.appPath);
    } catch (err) {
      error.textContent = err instanceof ApiError ? err.message : 'The server cannot be reached. Try again in a moment.';
      error.hidden = false;
      for (const button of root.querySelectorAll('button')) button.disabled = false;
    }
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void submit(false);
  });
  register.addEventListener('click', () => void submit(true));
}
