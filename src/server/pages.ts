import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type Express, type Request, type Response } from 'express';
import type { Settings } from '../config.js';

/** dist/web/ of the project (scripts/build-web.ts), from src/server/ and from a tsc build in dist/ alike. */
function webDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, 'dist', 'web');
}

export const APP_PATH = '/app';
export const GRAPHIQL_PATH = '/graphiql';
const GRAPHQL_PATH = '/graphql';
const ASSETS_PATH = '/assets';

// Everything a page loads comes from this server; the pages may talk to nothing else.
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "style-src 'self' 'unsafe-inline'", // GraphiQL sets inline styles
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

function html(title: string, bundle: 'app' | 'graphiql', config: object): string {
  // A JSON script is not executed; escaping "<" keeps a value from closing the element.
  const json = JSON.stringify(config).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${title}</title>
<link rel="stylesheet" href="${ASSETS_PATH}/${bundle}.css">
<script id="page-config" type="application/json">${json}</script>
<script type="module" src="${ASSETS_PATH}/${bundle}.js"></script>
</head>
<body>
<div id="${bundle}"></div>
</body>
</html>
`;
}

/**
 * The browser pages: the reference frontend at /app (and at LOGIN_URL when that is a path on this
 * server), GraphiQL at /graphiql unless GRAPHIQL_ENABLED is off, their bundles under /assets.
 * Mounted before /graphql so that a browser opening /graphql gets GraphiQL, not Apollo's landing
 * page (which loads from Apollo's CDN).
 */
export function mountPages(app: Express, settings: Settings): void {
  const dir = webDir();
  const config = {
    graphqlPath: GRAPHQL_PATH,
    loginUrl: settings.loginUrl,
    appPath: APP_PATH,
    graphiqlPath: settings.graphiqlEnabled ? GRAPHIQL_PATH : null,
    registrationEnabled: settings.registrationEnabled,
  };
  const appPage = html('Sessions', 'app', config);
  const graphiqlPage = html('GraphiQL · Sessions', 'graphiql', config);

  const send = (page: string) => (_req: Request, res: Response) => {
    if (!existsSync(path.join(dir, 'app.js'))) {
      res.status(503).type('text/plain').send('The web pages are not built: run `npm run build:web` (npm start and npm test do it).');
      return;
    }
    res.set({
      'Content-Security-Policy': CONTENT_SECURITY_POLICY,
      // frame-ancestors' older form, for browsers that predate it.
      'X-Frame-Options': 'DENY',
      'Referrer-Policy': 'no-referrer',
      'Cache-Control': 'no-cache',
    });
    res.type('html').send(page);
  };

  // LOGIN_URL may be any path (or another site): compared as a string, not as an Express route pattern.
  const loginPath = settings.loginUrl.split(/[?#]/)[0]!;
  const trim = (p: string) => p.replace(/\/+$/, '');
  if (loginPath.startsWith('/') && !loginPath.startsWith('//')) {
    app.use((req, res, next) => {
      if ((req.method === 'GET' || req.method === 'HEAD') && trim(req.path) === trim(loginPath)) send(appPage)(req, res);
      else next();
    });
  }
  app.use(ASSETS_PATH, express.static(dir, { index: false, setHeaders: (res) => res.setHeader('Cache-Control', 'no-cache') }));
  app.get('/', (_req, res) => res.redirect(APP_PATH));
  app.get([APP_PATH, `${APP_PATH}/*rest`], send(appPage));
  if (settings.graphiqlEnabled) app.get(GRAPHIQL_PATH, send(graphiqlPage));

  app.get(GRAPHQL_PATH, (req, res, next) => {
    // The same negotiation with which Apollo decides to serve its landing page.
    if (req.accepts(['application/json', 'application/graphql-response+json', 'multipart/mixed', 'text/html']) !== 'text/html') {
      next();
    } else if (settings.graphiqlEnabled) {
      res.redirect(GRAPHIQL_PATH);
    } else {
      res.type('text/plain').send('GraphQL endpoint: POST queries and mutations here, or subscribe over graphql-ws. GraphiQL is switched off on this server.');
    }
  });
}
