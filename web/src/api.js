// api.js — the review API client: the bearer token (kept in sessionStorage, so
// it dies with the tab) and one function per endpoint. Errors are ApiError
// with the HTTP status and the server's `{"error": "..."}` message.

const TOKEN_KEY = 'neurobatch.review.token';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

async function request(method, path, { json, body, contentType, bearer = token() } = {}) {
  const headers = { Authorization: `Bearer ${bearer}` };
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (contentType) {
    headers['Content-Type'] = contentType;
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, `${method} ${path}: the server cannot be reached (${e.message})`);
  }
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      const payload = await res.json();
      if (payload && typeof payload.error === 'string') message = payload.error;
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(res.status, message);
  }
  return res;
}

async function json(method, path, options) {
  const res = await request(method, path, options);
  return res.status === 204 ? null : res.json();
}

/** `GET /v1/me` with a token that is not stored yet (the login check). */
export const me = (bearer = token()) => json('GET', '/v1/me', { bearer });

/** `GET /v1/review/items`; empty filter values are left out. */
export async function items(filters = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(filters)) {
    if (value !== '' && value != null) query.set(key, String(value));
  }
  const res = await json('GET', `/v1/review/items?${query}`);
  return res.items;
}

export const item = (id) => json('GET', `/v1/review/items/${encodeURIComponent(id)}`);

/** The claimed case, or null when nothing is pending (204). */
export const claimNext = () => json('POST', '/v1/review/claim-next');

export const release = (id) => json('POST', `/v1/review/items/${encodeURIComponent(id)}/release`);

export function decide(id, action, comment) {
  const payload = { action };
  if (comment) payload.comment = comment;
  return json('POST', `/v1/review/items/${encodeURIComponent(id)}/decision`, { json: payload });
}

/** Uploads a corrected mask (a NIfTI file, as chosen by the reviewer). */
export function correct(id, file) {
  return json('PUT', `/v1/review/items/${encodeURIComponent(id)}/correction`, {
    body: file,
    contentType: 'application/octet-stream',
  });
}

export const comment = (id, text) =>
  request('POST', `/v1/review/items/${encodeURIComponent(id)}/comments`, { json: { text } });

/** An object of a case (`objects.image`, …) as bytes: NiiVue cannot send our header itself. */
export async function objectBytes(path) {
  const res = await request('GET', path);
  return res.arrayBuffer();
}
