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

createRoot(document.getElementById('graphiql')!).render(
  <GraphiQL
    fetcher={fetcher}
    defaultQuery={WALKTHROUGH}
    defaultEditorToolsVisibility="headers"
  >
    <GraphiQL.Logo>
      <a href={config.appPath}>Sessions</a> GraphiQL
    </GraphiQL.Logo>
  </GraphiQL>,
);
