// The one way these pages talk to sdbox: the public HTTP API, with the API key (when one is set) sent as
// `Authorization: Bearer` on every call. A 401 raises `sdbox:unauthorized`, which shows the sign-in form.

const KEY_STORAGE = 'sdbox.apiKey';

/** An answer other than 2xx: `status`, and the JSON error body's `error` and `detail` when it had them. */
export class APIError extends Error {
  constructor(status, body, path) {
    const error = body && typeof body === 'object' ? body.error : undefined;
    const detail = body && typeof body === 'object' ? body.detail : (typeof body === 'string' ? body : '');
    super(error ? (detail ? `${error}: ${detail}` : error) : `HTTP ${status} from ${path}`);
    this.status = status;
    this.body = body;
    this.detail = detail || '';
  }
}

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || '';
}

export function setAPIKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

/** The headers every call carries. */
function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function unauthorized() {
  window.dispatchEvent(new CustomEvent('sdbox:unauthorized'));
}

function parse(text) {
  if (!text) return null;
  try { return JSON.parse(text); } catch { return text; }
}

/**
 * Calls the API and answers the parsed JSON; throws `APIError` for any status other than 2xx.
 * `body` is sent as JSON; `headers` are added to the authorization header.
 */
export async function api(path, { method = 'GET', body, headers = {}, signal } = {}) {
  const init = { method, headers: { ...authHeaders(), ...headers }, signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const response = await fetch(path, init);
  const data = parse(await response.text());
  if (response.status === 401) unauthorized();
  if (!response.ok) throw new APIError(response.status, data, path);
  return data;
}

/**
 * Sends a file as the raw request body with XMLHttpRequest, whose upload progress events fetch lacks.
 * The browser streams the File from disk, so files of many gigabytes never sit in memory.
 * `onProgress(loaded, total)` follows the upload. Answers `{promise, abort}`; the promise resolves with
 * the parsed answer or rejects with an `APIError` (status 0 when the connection failed or was aborted).
 */
export function upload(path, file, { method = 'PUT', headers = {}, onProgress } = {}) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open(method, path);
    for (const [name, value] of Object.entries({ ...authHeaders(), ...headers })) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener('progress', (event) => {
      if (onProgress) onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
    });
    xhr.addEventListener('load', () => {
      const data = parse(xhr.responseText);
      if (xhr.status === 401) unauthorized();
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new APIError(xhr.status, data, path));
    });
    xhr.addEventListener('error', () => reject(new APIError(0, { error: 'upload failed', detail: 'the connection to sdbox failed' }, path)));
    xhr.addEventListener('abort', () => reject(new APIError(0, { error: 'upload cancelled' }, path)));
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}
