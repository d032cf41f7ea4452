/**
 * The CLI's client for the control API (undici). It finds the endpoint and token (flags, then
 * SIXPN_API_URL / SIXPN_TOKEN, then `--config FILE`'s [control] section), and turns API error
 * bodies back into errors that carry the server's code, so exit codes follow exitCodeFor().
 * It also follows server-sent event streams (`--follow`, `--watch`).
 */
import { Agent, request, type Dispatcher } from 'undici';
import { SixpnError, StoreUnavailableError, UnauthorizedError, ValidationError } from '../errors.js';

/** An error the API answered with; `code` is the server's, so exitCodeFor() maps it. */
export class ApiError extends SixpnError {
  constructor(
    override readonly code: string,
    override readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface Endpoint {
  url: string;
  token: string;
}

export interface EndpointSources {
  api?: string | undefined;
  token?: string | undefined;
  config?: string | undefined;
  env?: NodeJS.ProcessEnv;
}

/** `http://host:port` a client dials for a `[control] listen` value (wildcards become loopback). */
export function urlForListen(l: { host: string; port: number }): string {
  let host = l.host;
  if (host === '::' || host === '') host = '::1';
  if (host === '0.0.0.0') host = '127.0.0.1';
  return `http://${host.includes(':') ? `[${host}]` : host}:${l.port}`;
}

export async function resolveEndpoint(s: EndpointSources): Promise<Endpoint> {
  const env = s.env ?? process.env;
  let url = s.api ?? env.SIXPN_API_URL;
  let token = s.token ?? env.SIXPN_TOKEN;
  if ((url === undefined || token === undefined) && s.config !== undefined) {
    // Loaded only when needed: the config schema is the slowest part of CLI start-up.
    const { loadConfig } = await import('../config/index.js');
    const { config } = loadConfig(s.config, env);
    url ??= urlForListen(config.control.listen);
    if (token === undefined && config.control.token !== '') token = config.control.token;
  }
  url ??= 'http://127.0.0.1:4280';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ValidationError(`API URL ${JSON.stringify(url)} is not a URL (expected like http://127.0.0.1:4280)`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new ValidationError(`API URL ${url} must start with http:// or https://`);
  if (!token) throw new UnauthorizedError('no API token: pass --token, set SIXPN_TOKEN, or point --config at the node config');
  return { url: parsed.origin + parsed.pathname.replace(/\/+$/, ''), token };
}

export class ApiClient {
  private readonly agent = new Agent({ connect: { timeout: 5_000 }, headersTimeout: 30_000, bodyTimeout: 30_000 });

  constructor(readonly endpoint: Endpoint) {}

  async call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.endpoint.token}`, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res;
    try {
      res = await request(this.endpoint.url + path, {
        method: method as 'GET',
        headers,
        body: body === undefined ? null : JSON.stringify(body),
        dispatcher: this.agent,
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new StoreUnavailableError(`cannot reach the sixpn control API at ${this.endpoint.url}: ${e.code ?? e.message}`, { cause: err });
    }
    const text = await res.body.text();
    let parsed: unknown = undefined;
    if (text !== '') {
      try {
        parsed = JSON.parse(text);
      } catch {
        if (res.statusCode < 400) throw new ApiError('SIXPN_INTERNAL', res.statusCode, `the API at ${this.endpoint.url} answered ${method} ${path} with non-JSON`);
      }
    }
    if (res.statusCode >= 400) {
      const e = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
      const code = typeof e?.code === 'string' ? e.code : 'SIXPN_INTERNAL';
      const message = typeof e?.message === 'string' ? e.message : `HTTP ${res.statusCode} from ${method} ${path}`;
      throw new ApiError(code, res.statusCode, message);
    }
    return parsed as T;
  }

  /** Opens a GET stream; throws like call() when the API cannot be reached or refuses. */
  private async openStream(path: string, accept: string, opts: { lastEventId?: string | undefined; signal?: AbortSignal; bodyTimeout: number }): Promise<Dispatcher.ResponseData | null> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.endpoint.token}`, accept };
    if (opts.lastEventId !== undefined) headers['last-event-id'] = opts.lastEventId;
    let res;
    try {
      res = await request(this.endpoint.url + path, { method: 'GET', headers, dispatcher: this.agent, bodyTimeout: opts.bodyTimeout, ...(opts.signal ? { signal: opts.signal } : {}) });
    } catch (err) {
      if (opts.signal?.aborted) return null;
      const e = err as NodeJS.ErrnoException;
      throw new StoreUnavailableError(`cannot reach the sixpn control API at ${this.endpoint.url}: ${e.code ?? e.message}`, { cause: err });
    }
    if (res.statusCode >= 400) {
      const text = await res.body.text();
      let e: { code?: unknown; message?: unknown } | undefined;
      try {
        e = (JSON.parse(text) as { error?: typeof e }).error;
      } catch {
        e = undefined;
      }
      throw new ApiError(typeof e?.code === 'string' ? e.code : 'SIXPN_INTERNAL', res.statusCode, typeof e?.message === 'string' ? e.message : `HTTP ${res.statusCode} from GET ${path}`);
    }
    return res;
  }

  /** Reads a stream's body, handing each complete record (split at `sep`) to `onRecord`; a dropped connection just ends it. */
  private static async readRecords(res: Dispatcher.ResponseData, sep: string, onRecord: (text: string) => void): Promise<void> {
    const chunks = res.body[Symbol.asyncIterator]();
    let buf = '';
    try {
      for (;;) {
        let next: IteratorResult<unknown>;
        try {
          next = await chunks.next();
        } catch {
          // The caller decides whether to reconnect.
          return;
        }
        if (next.done) return;
        buf += (next.value as Buffer).toString('utf8');
        let i: number;
        while ((i = buf.indexOf(sep)) >= 0) {
          const record = buf.slice(0, i);
          buf = buf.slice(i + sep.length);
          // What the callback throws ends the stream and reaches the caller.
          onRecord(record);
        }
      }
    } finally {
      res.body.destroy();
    }
  }

  /**
   * Follows a server-sent event stream (`/v1/events?follow=1`, `/v1/status/events`) and calls
   * `onEvent` per frame until the server ends it, the connection drops (both resolve) or
   * `signal` aborts. Throws like call() when the API cannot be reached or refuses.
   */
  async stream(path: string, onEvent: (e: StreamEvent) => void, opts: { lastEventId?: string | undefined; signal?: AbortSignal } = {}): Promise<void> {
    // The server writes at least every 15 s (a keep-alive comment): a minute of silence is a dead link.
    const res = await this.openStream(path, 'text/event-stream', { ...opts, bodyTimeout: 60_000 });
    if (!res) return;
    await ApiClient.readRecords(res, '\n\n', (text) => {
      const frame = parseFrame(text);
      if (frame) onEvent(frame);
    });
  }

  /** GETs a newline-delimited JSON stream (logs --follow), calling `onItem` per line until it ends. */
  async streamLines<T = unknown>(path: string, onItem: (item: T) => void): Promise<void> {
    const res = await this.openStream(path, 'application/x-ndjson', { bodyTimeout: 0 });
    if (!res) return;
    await ApiClient.readRecords(res, '\n', (line) => {
      if (line.trim()) onItem(JSON.parse(line) as T);
    });
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

export interface StreamEvent {
  event: string;
  id?: string;
  data: string;
}

/** One server-sent event frame; null for comments and frames without data. */
export function parseFrame(text: string): StreamEvent | null {
  let event = 'message';
  let id: string | undefined;
  const data: string[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'id') id = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return null;
  return id === undefined ? { event, data: data.join('\n') } : { event, id, data: data.join('\n') };
}

/** Percent-encodes one path segment. */
export const seg = (s: string): string => encodeURIComponent(s);
