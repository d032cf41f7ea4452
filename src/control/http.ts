/**
 * The small HTTP toolkit of the control API: a path-pattern router that tells "no such route"
 * (404) from "wrong method" (405), bounded JSON body reading, and the one place where errors
 * become `{"error":{"code","message"}}`. Tokens are checked in ./tokens.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SixpnError, UnauthorizedError, ValidationError } from '../errors.js';
import type { Principal } from './tokens.js';

/** Largest request body the API reads; admin requests are small. */
export const MAX_BODY_BYTES = 1024 * 1024;

export interface ApiRequest {
  method: string;
  /** Who the request acts for (the admin token or an org token). */
  principal: Principal;
  params: Readonly<Record<string, string>>;
  query: URLSearchParams;
  /** The parsed JSON body (`undefined` when empty). */
  body: unknown;
  id: string;
}

export interface ApiResponse {
  status: number;
  body?: unknown;
}

export type Handler = (req: ApiRequest) => Promise<ApiResponse>;

interface Route {
  method: string;
  pattern: string;
  segments: string[];
  handler: Handler;
}

export type RouteMatch =
  | { kind: 'found'; route: string; handler: Handler; params: Record<string, string> }
  | { kind: 'method'; route: string; allowed: string[] }
  | { kind: 'none' };

/** Routes like `/v1/apps/:app/ips/:address`; a `:name` segment matches one non-empty segment. */
export class Router {
  private readonly routes: Route[] = [];

  add(method: string, pattern: string, handler: Handler): this {
    this.routes.push({ method, pattern, segments: pattern.split('/').slice(1), handler });
    return this;
  }

  /** Every route as `METHOD /pattern` (tests check each is covered). */
  list(): string[] {
    return this.routes.map((r) => `${r.method} ${r.pattern}`);
  }

  match(method: string, path: string): RouteMatch {
    const parts = path.split('/').slice(1);
    const allowed: string[] = [];
    let pattern = '';
    for (const r of this.routes) {
      const params = matchSegments(r.segments, parts);
      if (!params) continue;
      if (r.method === method) return { kind: 'found', route: r.pattern, handler: r.handler, params };
      allowed.push(r.method);
      pattern = r.pattern;
    }
    return allowed.length ? { kind: 'method', route: pattern, allowed } : { kind: 'none' };
  }
}

function matchSegments(pattern: string[], parts: string[]): Record<string, string> | null {
  if (pattern.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const v = parts[i]!;
    if (p.startsWith(':')) {
      if (v === '') return null;
      let decoded: string;
      try {
        decoded = decodeURIComponent(v);
      } catch {
        throw new ValidationError(`path segment ${JSON.stringify(v)} is not valid percent-encoding`);
      }
      params[p.slice(1)] = decoded;
    } else if (p !== v) return null;
  }
  return params;
}

/** An error response that is not one of the domain errors (405, 413). */
export class HttpError extends SixpnError {
  constructor(
    override readonly status: number,
    override readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Reads and parses a JSON body of at most `limit` bytes; empty bodies give `undefined`. */
export async function readJsonBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) throw new HttpError(413, 'SIXPN_INVALID', `request body is larger than ${limit} bytes`, { connection: 'close' });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, 'SIXPN_INVALID', `request body is larger than ${limit} bytes`, { connection: 'close' });
    chunks.push(chunk);
  }
  if (size === 0) return undefined;
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ValidationError(`request body is not valid JSON: ${(err as Error).message}`);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (status === 204 || body === undefined) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export interface ErrorReply {
  status: number;
  code: string;
  message: string;
  headers: Record<string, string>;
  /** True when the error is ours to fix (a bug or an outage), not the caller's. */
  internal: boolean;
}

/**
 * Maps any thrown value to the reply the caller sees. Domain errors keep their message (it is
 * written to be shown); anything else becomes a generic 500 that names the request id only.
 */
export function errorReply(err: unknown, requestId: string): ErrorReply {
  if (err instanceof SixpnError && err.code !== 'SIXPN_INTERNAL') {
    const headers = err instanceof HttpError ? err.headers : {};
    if (err instanceof UnauthorizedError) headers['www-authenticate'] = 'Bearer realm="sixpn"';
    return { status: err.status, code: err.code, message: err.message, headers, internal: err.status >= 500 };
  }
  return {
    status: 500,
    code: 'SIXPN_INTERNAL',
    message: `internal error (request id ${requestId}); the server log has the details`,
    headers: {},
    internal: true,
  };
}
