/**
 * The control API's HTTP toolkit: route matching (404 vs 405), body limits and
 * the mapping of errors to `{"error":{"code","message"}}` replies.
 */
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { errorReply, readJsonBody, Router } from '../../../src/control/http.js';
import { ConflictError, NotFoundError, UnauthorizedError, ValidationError } from '../../../src/errors.js';

const noop = async () => ({ status: 200 });

describe('Router', () => {
  const r = new Router()
    .add('GET', '/v1/apps', noop)
    .add('POST', '/v1/apps', noop)
    .add('GET', '/v1/apps/:app', noop)
    .add('DELETE', '/v1/apps/:app/ips/:address', noop);

  it('finds a route and its params, percent-decoded', () => {
    const m = r.match('DELETE', '/v1/apps/web/ips/fdaa%3A0%3A18%3A0%3A1%3A%3A3');
    expect(m.kind).toBe('found');
    if (m.kind === 'found') {
      expect(m.route).toBe('/v1/apps/:app/ips/:address');
      expect(m.params).toEqual({ app: 'web', address: 'fdaa:0:18:0:1::3' });
    }
  });

  it('tells a wrong method (with the allowed ones) from no route', () => {
    expect(r.match('PUT', '/v1/apps')).toEqual({ kind: 'method', route: '/v1/apps', allowed: ['GET', 'POST'] });
    expect(r.match('GET', '/v1/apps/web/extra').kind).toBe('none');
    expect(r.match('GET', '/v1/apps/').kind).toBe('none');
    expect(r.match('GET', '/v1').kind).toBe('none');
  });

  it('rejects broken percent-encoding as bad input', () => {
    expect(() => r.match('GET', '/v1/apps/%E0%A4%A')).toThrow(ValidationError);
  });
});

function fakeRequest(body: string | Buffer[], headers: Record<string, string> = {}): IncomingMessage {
  const chunks = typeof body === 'string' ? [Buffer.from(body)] : body;
  return Object.assign(Readable.from(chunks), { headers }) as unknown as IncomingMessage;
}

describe('readJsonBody', () => {
  it('parses JSON and treats an empty body as undefined', async () => {
    expect(await readJsonBody(fakeRequest('{"a":1}'))).toEqual({ a: 1 });
    expect(await readJsonBody(fakeRequest([]))).toBeUndefined();
  });
  it('refuses malformed JSON as SIXPN_INVALID', async () => {
    await expect(readJsonBody(fakeRequest('{"a":'))).rejects.toThrow(ValidationError);
  });
  it('refuses bodies over the limit, declared or streamed', async () => {
    await expect(readJsonBody(fakeRequest('{}', { 'content-length': '2000' }), 1000)).rejects.toMatchObject({ status: 413 });
    const many = Array.from({ length: 20 }, () => Buffer.alloc(100, 0x20));
    await expect(readJsonBody(fakeRequest(many), 1000)).rejects.toMatchObject({ status: 413, code: 'SIXPN_INVALID' });
  });
});

describe('errorReply', () => {
  it('keeps domain errors and their message', () => {
    expect(errorReply(new NotFoundError('app x not found'), 'r1')).toMatchObject({ status: 404, code: 'SIXPN_NOT_FOUND', message: 'app x not found', internal: false });
    expect(errorReply(new ConflictError('dup'), 'r1')).toMatchObject({ status: 409, code: 'SIXPN_CONFLICT' });
    expect(errorReply(new UnauthorizedError('no'), 'r1').headers['www-authenticate']).toMatch(/^Bearer/);
  });
  it('hides anything else behind a generic 500 naming the request id', () => {
    const e = errorReply(new TypeError('cannot read properties of undefined (secret detail)'), 'req-42');
    expect(e).toMatchObject({ status: 500, code: 'SIXPN_INTERNAL', internal: true });
    expect(e.message).toContain('req-42');
    expect(e.message).not.toContain('secret');
  });
});
