// The REST API as the console calls it: the token from sessionStorage (never a URL), errors
// from the Google envelope, and the log stream (server-sent events read through fetch, which,
// unlike EventSource, can send the Authorization header).

const KEY = 'mle.token';

export function token() { return sessionStorage.getItem(KEY) || ''; }
export function setToken(t) { sessionStorage.setItem(KEY, t); }
export function signOut() { sessionStorage.removeItem(KEY); }

/** An error the API answered: its HTTP status and message. */
export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

let onUnauthorized = () => {};
/** What to do when the token is refused (401). */
export function whenUnauthorized(f) { onUnauthorized = f; }

/** `method path` with a JSON body; the JSON answer, or an ApiError. */
export async function api(method, path, body, { quiet401 = false, tok = token() } = {}) {
  const headers = { Authorization: `Bearer ${tok}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, `the server cannot be reached (${e.message})`);
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : {}; } catch { json = null; }
  if (!res.ok) {
    const msg = (json && json.error && json.error.message) || text || res.statusText;
    if (res.status === 401 && !quiet401) onUnauthorized();
    throw new ApiError(res.status, `${res.status}: ${msg}`);
  }
  return json;
}

export const get = (p, o) => api('GET', p, undefined, o);
export const post = (p, b) => api('POST', p, b === undefined ? {} : b);

/** Path of a project's collection or resource. */
export const project = (p) => `/v1/projects/${encodeURIComponent(p)}`;

/**
 * Follows a job's logs: calls `onEntries(entries)` for each batch until the job has ended
 * (then `onEnd(state)`) or `signal` aborts. Reconnects from its cursor when the stream drops.
 */
export async function followLogs(path, { onEntries, onEnd, onError, signal }) {
  let cursor = '';
  while (!signal.aborted) {
    try {
      const url = `${path}${path.includes('?') ? '&' : '?'}pageToken=${encodeURIComponent(cursor)}`;
      const res = await fetch(url, { headers: { Authorization: `Bearer ${token()}`, Accept: 'text/event-stream' }, signal });
      if (!res.ok) throw new ApiError(res.status, `${res.status}: ${await res.text()}`);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let at;
        while ((at = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, at);
          buf = buf.slice(at + 2);
          const ev = { event: 'message', data: '' };
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) ev.event = line.slice(7);
            else if (line.startsWith('data: ')) ev.data += line.slice(6);
          }
          if (!ev.data) continue;
          const data = JSON.parse(ev.data);
          if (ev.event === 'entries') {
            cursor = data.nextPageToken || cursor;
            onEntries(data.entries || []);
          } else if (ev.event === 'end') {
            onEnd(data.state);
            return;
          }
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (onError) onError(e);
      if (e instanceof ApiError && e.status >= 400 && e.status < 500) return;
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}
