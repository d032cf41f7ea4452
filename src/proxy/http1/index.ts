/**
 * The HTTP/1.1 forwarding engine: strict head parsing, pass-through body framing, the head
 * rewrite, keep-alive machine pools and the socket-level forwarder. See README.md here.
 */
export { Http1Forwarder, type CallerContext, type CallerHandle, type Connected, type ForwarderHooks, type ForwarderLog, type ForwarderOptions, type ReplayState, type ReplayTo, type Route } from './forwarder.js';
export { UpstreamPool, UpstreamConn, type PoolOptions } from './pool.js';
export { HeadParser, INVALID, NEED_MORE, type HeadLimits } from './head.js';
export { BODY, BodyReader, requestBody, responseBody, type BodyKind } from './framing.js';
export { ChunkScanner } from './chunked.js';
export { CallerIdentity, rewriteRequest, rewriteResponse, CONNECTION } from './rewrite.js';
export { Deadlines, Timed } from './deadlines.js';
