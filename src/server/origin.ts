import type { IncomingMessage } from 'node:http';
import type { TrustProxy } from './clientAddress.js';

/**
 * Cross-site websocket hijacking: who may use the session cookie on a websocket.
 *
 * A browser sends the session cookie with every websocket upgrade to this server that its
 * SameSite rule lets through, whichever page opened the socket, and neither the same-origin policy
 * nor CORS applies to websockets (Apollo's CSRF prevention covers HTTP only). So a socket that
 * authenticates by cookie is accepted only if its upgrade request's `Origin` is the server's own
 * origin or one listed in ALLOWED_ORIGINS. The rule, in full:
 *
 * - Same origin (scheme, host and port of the upgrade request itself): allowed.
 * - An origin in ALLOWED_ORIGINS: allowed.
 * - No `Origin` header: allowed. Browsers always send `Origin` on websocket upgrades (the
 *   WebSocket standard requires it), so a request without one is not from a browser (curl, Node,
 *   a mobile app): nobody's ambient cookie is being used on their behalf, and a client that has
 *   the cookie's value could as well send it as a token.
 * - `Origin: null` (sandboxed iframes, `file:` and `data:` pages, some redirects), any other
 *   origin, or a value that is not exactly one well-formed origin: refused (graphql-ws's
 *   `CloseCode.Forbidden`, 4403).
 *
 * Sockets that carry a token in connectionParams hold no ambient credential (a page can only send
 * a token it already has) and are not checked: they may come from anywhere.
 *
 * Everything here is pure: it reads header values and compares strings.
 */

/** What the check needs from the upgrade request (see {@link upgradeRequestOrigin}). */
export interface UpgradeOrigin {
  /** The `Origin` header as received: undefined if absent; an array if it came more than once. */
  origin: string | readonly string[] | undefined;
  /** The `Host` header: the server's own host and port as the client addressed it. */
  host: string | undefined;
  /** Whether the client reached the server over TLS (wss:), directly or through a trusted proxy. */
  secure: boolean;
}

/**
 * `scheme://host[:port]` and nothing else: http or https, an ASCII host name, IPv4 address or
 * bracketed IPv6 address, digits for the port. No user info, path, query, fragment, whitespace or
 * percent-encoding, which rules out the values that parse as another host than they seem to name
 * (`http://127.0.0.1:4000@evil.example`, `http://127.0.0.1:4000.evil.example`, `http://a, http://b`).
 */
const ORIGIN_SYNTAX = /^https?:\/\/(?:[a-z0-9_~-]+(?:\.[a-z0-9_~-]+)*\.?|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$/i;
/** The same for a `Host` header: `host[:port]`. */
const HOST_SYNTAX = /^(?:[a-z0-9_~-]+(?:\.[a-z0-9_~-]+)*\.?|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$/i;

/**
 * The canonical serialisation of an origin (lower-case scheme and host, default port left out,
 * as browsers send it), or null if `value` is not exactly one http(s) origin `scheme://host[:port]`.
 * `null` (the opaque origin) is not an origin here.
 */
export function normaliseOrigin(value: string): string | null {
  if (!ORIGIN_SYNTAX.test(value)) return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null; // a port over 65535, a malformed IPv6 address, ...
  }
  // Belt and braces: the syntax above admits nothing else.
  if (url.username || url.password || url.pathname !== '/' || url.search || url.hash) return null;
  return url.origin;
}

/** The server's own origin as the client addressed it: `Host` with http or https; null if `Host` is missing or malformed. */
export function ownOrigin(host: string | undefined, secure: boolean): string | null {
  if (!host || !HOST_SYNTAX.test(host)) return null;
  return normaliseOrigin(`${secure ? 'https' : 'http'}://${host}`);
}

/**
 * Whether a socket that authenticates with the session cookie may be accepted: its `Origin` is
 * absent (not a browser), the server's own origin, or one of `allowedOrigins` (canonical origins,
 * as `Settings.allowedOrigins` holds them). Call it only for cookie-authenticated sockets; a socket
 * with a token in connectionParams is accepted from any origin.
 */
export function cookieOriginAllowed({ origin, host, secure }: UpgradeOrigin, allowedOrigins: readonly string[]): boolean {
  if (origin === undefined) return true;
  if (typeof origin !== 'string') {
    if (origin.length !== 1) return false; // sent twice: a browser never does
    origin = origin[0]!;
  }
  const normalised = normaliseOrigin(origin);
  if (normalised === null) return false; // `null`, empty, several values joined by commas, garbage
  return normalised === ownOrigin(host, secure) || allowedOrigins.includes(normalised);
}

/**
 * The inputs of {@link cookieOriginAllowed} from an upgrade request. `secure` is true on a TLS
 * socket, or, when the peer is a trusted proxy, when the first value of `X-Forwarded-Proto` is
 * `https` (as Express's `req.protocol`). Pass the same trust as the client address uses (clientAddress.ts `trustProxy`).
 */
export function upgradeRequestOrigin(request: IncomingMessage, trustProxy: TrustProxy = () => false): UpgradeOrigin {
  const socket = request.socket as IncomingMessage['socket'] & { encrypted?: boolean };
  let secure = socket.encrypted === true;
  if (!secure && trustProxy(socket.remoteAddress ?? '', 0)) {
    const forwarded = request.headers['x-forwarded-proto'];
    const first = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim().toLowerCase();
    secure = first === 'https';
  }
  return { origin: request.headers.origin, host: request.headers.host, secure };
}

/**
 * ALLOWED_ORIGINS: comma-separated origins, each `scheme://host[:port]` with no path (no trailing
 * slash either), e.g. `https://app.example.com,http://localhost:5173`. Returns their canonical
 * forms, or the reason the list is refused (for the configuration error).
 */
export function parseAllowedOrigins(list: string): { origins: string[] } | { error: string } {
  const origins: string[] = [];
  for (const entry of list.split(',').map((e) => e.trim())) {
    if (entry === '') continue;
    if (entry === '*' || entry.includes('*')) return { error: `"${entry}": wildcards are not supported; list each origin` };
    if (entry.toLowerCase() === 'null') return { error: '"null" is not allowed: it is the origin of any sandboxed or file: page' };
    const origin = normaliseOrigin(entry);
    if (origin === null) {
      return { error: `"${entry}" is not an origin: expected scheme://host[:port] with scheme http or https, no path and no trailing slash (e.g. https://app.example.com)` };
    }
    if (!origins.includes(origin)) origins.push(origin);
  }
  return { origins };
}
