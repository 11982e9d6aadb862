/** The set-up mutations the benchmarks send: a user registered, and a session logged in for its token. */
export const REGISTER = 'mutation($u: String!, $p: String!) { register(username: $u, password: $p) { id } }';
export const LOGIN = 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }';

/** One GraphQL request over HTTP POST for the bench's set-up; its `data`, or an error naming the GraphQL errors. */
export async function gql<T>(url: string, query: string, variables: Record<string, unknown>, headers: Record<string, string> = {}): Promise<T> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: T; errors?: Array<{ message: string }> };
  if (body.errors?.length || !body.data) throw new Error(`GraphQL error: ${JSON.stringify(body.errors)}`);
  return body.data;
}
