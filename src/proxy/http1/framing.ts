/**
 * Message framing: from a parsed head to how its body is delimited, and a reader that says, for
 * each run of bytes, how many of them are body. Bodies are never copied or changed here.
 *
 * Requests: `Transfer-Encoding: chunked` (the only coding the head parser accepts), else
 * Content-Length, else no body. Responses (RFC 9112 section 6.3): to HEAD, 1xx, 204 and 304 no
 * body; 101 ends HTTP on the connection; chunked last; else Content-Length; else (a coding
 * other than chunked, or no length at all) the body runs until the machine closes.
 */
import { BODY_CONTINUES, BODY_INVALID, ChunkScanner } from './chunked.js';
import type { HeadParser } from './head.js';

export { BODY_CONTINUES, BODY_INVALID };

export const BODY = {
  NONE: 0,
  LENGTH: 1,
  CHUNKED: 2,
  /** Read until the connection closes (responses only). */
  CLOSE: 3,
  /** 1xx other than 101: an interim response, the final one follows. */
  INTERIM: 4,
  /** 101: the connection leaves HTTP. */
  SWITCH: 5,
} as const;
export type BodyKind = (typeof BODY)[keyof typeof BODY];

export function requestBody(h: HeadParser): BodyKind {
  if (h.chunked) return BODY.CHUNKED;
  return h.contentLength > 0 ? BODY.LENGTH : BODY.NONE;
}

export function responseBody(h: HeadParser, requestMethod: string | null): BodyKind {
  const s = h.status;
  if (s < 200) return s === 101 ? BODY.SWITCH : BODY.INTERIM;
  if (requestMethod === 'HEAD' || s === 204 || s === 304) return BODY.NONE;
  if (h.chunked) return BODY.CHUNKED;
  if (h.transferEncoding) return BODY.CLOSE;
  if (h.contentLength >= 0) return h.contentLength > 0 ? BODY.LENGTH : BODY.NONE;
  return BODY.CLOSE;
}

/** Counts body bytes for one message at a time (reused across messages). */
export class BodyReader {
  kind: BodyKind = BODY.NONE;
  /** Content-Length bytes still to come. */
  remaining = 0;
  readonly chunks: ChunkScanner;

  constructor(maxLineBytes: number) {
    this.chunks = new ChunkScanner({ maxLineBytes });
  }

  get reason(): string {
    return this.chunks.reason;
  }

  begin(kind: BodyKind, length: number): void {
    this.kind = kind;
    this.remaining = kind === BODY.LENGTH ? length : 0;
    if (kind === BODY.CHUNKED) this.chunks.reset();
  }

  /**
   * Of buf[start, end): the offset just past the body's last byte when the body ends there,
   * BODY_CONTINUES when all of it is body, BODY_INVALID when the chunked framing is bad.
   */
  read(buf: Uint8Array, start: number, end: number): number {
    switch (this.kind) {
      case BODY.LENGTH: {
        const n = end - start;
        if (n < this.remaining) {
          this.remaining -= n;
          return BODY_CONTINUES;
        }
        const at = start + this.remaining;
        this.remaining = 0;
        return at;
      }
      case BODY.CHUNKED:
        return this.chunks.scan(buf, start, end);
      case BODY.CLOSE:
        return BODY_CONTINUES;
      default:
        return start;
    }
  }
}
