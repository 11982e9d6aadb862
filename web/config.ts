/** What the server tells its pages (src/server/pages.ts writes it into each page). */
export interface PageConfig {
  /** Path of the GraphQL endpoint, for HTTP and graphql-ws alike. */
  graphqlPath: string;
  /** LOGIN_URL: where the server sends clients whose session has ended. */
  loginUrl: string;
  appPath: string;
  /** Null when GraphiQL is switched off. */
  graphiqlPath: string | null;
  registrationEnabled: boolean;
}

export function pageConfig(): PageConfig {
  return JSON.parse(document.getElementById('page-config')!.textContent!) as PageConfig;
}

export function websocketUrl(path: string): string {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}
