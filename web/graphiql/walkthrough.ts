/** The first document a visitor sees in GraphiQL. */
export const WALKTHROUGH = `# Sessions API walkthrough. Run the operations one by
# one: the run button asks which (Ctrl-Enter runs the
# one under the cursor). Docs: the book icon, top left.
#
# 1. Register (skip it if the name is taken), then Login
#    and copy the token from the result.
# 2. Paste it into Headers (below) as
#      {"Authorization": "Bearer <token>"}
#    Queries and mutations send these headers; for
#    subscriptions they become the graphql-ws
#    connectionParams, where {"token": "<token>"}
#    works as well.
# 3. SetExpiry: 30 s of inactivity. Session reads it
#    (reading never moves the expiry). SessionEvents
#    shows EXPIRING_SOON 10 s before the end, then
#    EXPIRED the moment the 30 s are up. Run Touch in a
#    second browser tab (same header) to renew it:
#    EXPIRY_CHANGED.

mutation Register {
  register(username: "alice", password: "correct horse") {
    id
    username
  }
}

mutation Login {
  login(username: "alice", password: "correct horse") {
    token
    session {
      id
      expiryDate
      policy
    }
  }
}

mutation SetExpiry {
  setExpiry(seconds: 30) {
    expiryAge
    expiryDate
    policy
    serverTime
  }
}

query Session {
  session {
    id
    expiryAge
    expiryDate
    expireAtBrowserClose
    policy
    limitedBy
    serverTime
  }
}

subscription SessionEvents {
  sessionEvents(expiringSoonLead: 10) {
    kind
    sessionId
    expiresAt
    serverTime
    secondsLeft
    reason
    redirectTo
  }
}

mutation Touch {
  touch {
    expiryDate
    serverTime
  }
}
`;
