// The admin JSON API, as the page calls it: the session cookie goes with
// every request by itself; changes carry the session's CSRF token in the
// X-Herald-CSRF header. The admin token is sent once, to sign in.

let csrf = null;

/** An API error with its HTTP status and herald's message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Called when a request finds the session gone (401). */
let onSignedOut = () => {};
export function whenSignedOut(f) { onSignedOut = f; }

async function request(method, path, body, accept) {
  const headers = { Accept: accept };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-Herald-CSRF'] = csrf;
  let response;
  try {
    response = await fetch(path, {
      method, headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, `the relay did not answer (${e.message}); is it running?`);
  }
  const text = await response.text();
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try { message = JSON.parse(text).error || message; } catch (_) { /* not JSON */ }
    if (response.status === 401 && path !== '/api/session') onSignedOut();
    throw new ApiError(response.status, message);
  }
  return text;
}

/** A JSON request; the decoded answer (null for an empty one). */
export async function api(method, path, body) {
  const text = await request(method, path, body, 'application/json');
  return text ? JSON.parse(text) : null;
}

/** A GET of a text/plain resource. */
export function getText(path) {
  return request('GET', path, undefined, 'text/plain');
}

/** The current session, or null when not signed in. */
export async function loadSession() {
  try {
    const session = await api('GET', '/api/session');
    csrf = session.csrf_token;
    return session;
  } catch (e) {
    if (e.status === 401) { csrf = null; return null; }
    throw e;
  }
}

/** Exchanges the admin token for a session cookie. */
export async function signIn(token) {
  const session = await api('POST', '/api/session', { token });
  csrf = session.csrf_token;
  return session;
}

export async function signOut() {
  try { await api('DELETE', '/api/session'); } finally { csrf = null; }
}

/** A path segment, escaped. */
export function seg(text) { return encodeURIComponent(text); }
