// The control API as the host and autostart benches drive it: one function per node that sends
// a JSON body with the node's bearer token and returns the parsed answer, or throws naming the
// call and the node's answer, so that a refused step stops the bench instead of skewing it.
import { request } from 'undici';

/** `call(method, path, body?)` against `api` (`http://host:port`); `timeoutMs` bounds a slow answer (a run of many machines). */
export function controlCaller(api, token, timeoutMs) {
  return async (method, path, body) => {
    const res = await request(api + path, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body), headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    const text = await res.body.text();
    if (res.statusCode >= 400) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
}
