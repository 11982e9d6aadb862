import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { GraphiQL } from 'graphiql';
import 'graphiql/style.css';
import './graphiql.css';
import { createRoot } from 'react-dom/client';
import { pageConfig, websocketUrl } from '../config.js';
import { WALKTHROUGH } from './walkthrough.js';

const config = pageConfig();

// With subscriptionUrl (and no wsClient), the toolkit opens a graphql-ws client per subscription
// whose connectionParams are the headers typed in GraphiQL, so {"Authorization": "Bearer <token>"}
// authenticates the websocket too.
const fetcher = createGraphiQLFetcher({
  url: new URL(config.graphqlPath, location.href).toString(),
  subscriptionUrl: websocketUrl(config.graphqlPath),
});

/**
 * GraphiQL's tabs, history and settings, for this page's life only. Its default, localStorage,
 * kept every document run (the walkthrough's carry passwords) for any script of this origin, the
 * frontend's included, and anyone at the machine to read.
 */
const items = new Map<string, string>();
const pageMemory = {
  getItem: (key: string) => items.get(key) ?? null,
  setItem: (key: string, value: string) => void items.set(key, value),
  removeItem: (key: string) => void items.delete(key),
  clear: () => items.clear(),
  get length() {
    return items.size;
  },
};

createRoot(document.getElementById('graphiql')!).render(
  <GraphiQL
    fetcher={fetcher}
    storage={pageMemory}
    defaultQuery={WALKTHROUGH}
    defaultEditorToolsVisibility="headers"
  >
    <GraphiQL.Logo>
      <a href={config.appPath}>Sessions</a> GraphiQL
    </GraphiQL.Logo>
  </GraphiQL>,
);
