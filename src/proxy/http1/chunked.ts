/**
 * The chunk scanner: finds where a chunked body ends without changing a byte of it.
 *
 * The proxy forwards chunked bodies as they are (sizes, extensions, trailers and all); it only
 * has to know where the body stops, so that the next message on the connection is parsed from
 * the right byte, and that the framing is well-formed, so that the machine or the caller behind
 * us cannot read it differently. The grammar is llhttp's strict one (hex size, no whitespace
 * after it, `;name[=token|"quoted"]` extensions, CRLF everywhere, trailer fields like header
 * fields, no obs-fold); trailer fields that would change framing or the connection
 * (Content-Length, Transfer-Encoding, Connection, Proxy-Connection, Upgrade) are refused.
 * Chunk data is skipped by count, never looked at.
 */
import { CR, HEX, LF, QDTEXT, QPAIR, TOKEN, VALUE } from './tables.js';

/** scan(): every byte given belongs to the body; it goes on. */
export const BODY_CONTINUES = -1;
/** scan(): the framing is invalid; `reason` says why. */
export const BODY_INVALID = -2;

const S = {
  SIZE_START: 0,
  SIZE: 1,
  EXT_START: 2,
  EXT_NAME: 3,
  EXT_VALUE: 4,
  QUOTED: 5,
  QPAIR: 6,
  QUOTED_DONE: 7,
  SIZE_LF: 8,
  DATA: 9,
  DATA_CR: 10,
  DATA_LF: 11,
  TRAILER_START: 12,
  TRAILER_NAME: 13,
  TRAILER_VALUE: 14,
  TRAILER_LF: 15,
  END_LF: 16,
  DONE: 17,
  INVALID: 18,
} as const;


/** Trailer names refused (lower-case). */
const REFUSED_TRAILERS = ['content-length', 'transfer-encoding', 'connection', 'proxy-connection', 'upgrade'].map((n) => Buffer.from(n, 'latin1'));
const ALL_REFUSED = (1 << REFUSED_TRAILERS.length) - 1;

export interface ChunkLimits {
  /** Most bytes of one chunk-size line (size and extensions) and of the trailer section. */
  maxLineBytes: number;
}

export class ChunkScanner {
  reason = '';
  private state: number = S.SIZE_START;
  private size = 0;
  private remaining = 0;
  private lineBytes = 0;
  private trailerBytes = 0;
  private nameLen = 0;
  private nameAlive = 0;

  constructor(readonly limits: ChunkLimits) {}

  reset(): void {
    this.state = S.SIZE_START;
    this.size = 0;
    this.remaining = 0;
    this.lineBytes = 0;
    this.trailerBytes = 0;
    this.reason = '';
  }

  get done(): boolean {
    return this.state === S.DONE;
  }

  /** Scans buf[start, end): the offset just past the body if it ends there, BODY_CONTINUES, or BODY_INVALID. */
  scan(buf: Uint8Array, start: number, end: number): number {
    let i = start;
    let state = this.state;
    while (i < end) {
      if (state === S.DATA) {
        const n = Math.min(this.remaining, end - i);
        i += n;
        this.remaining -= n;
        if (this.remaining === 0) state = S.DATA_CR;
        continue;
      }
      const c = buf[i]!;
      i++;
      switch (state) {
        case S.SIZE_START:
        case S.SIZE: {
          const d = HEX[c]!;
          if (d >= 0) {
            this.size = this.size * 16 + d;
            if (this.size > Number.MAX_SAFE_INTEGER) return this.fail('chunk size too large');
            state = S.SIZE;
            break;
          }
          if (state === S.SIZE_START) return this.fail('invalid chunk size');
          if (c === CR) state = S.SIZE_LF;
          else if (c === 0x3b) state = S.EXT_START;
          else return this.fail('invalid chunk size');
          break;
        }
        case S.EXT_START:
          if (c === 0x20 || c === CR) return this.fail('invalid chunk extension');
          state = S.EXT_NAME;
          i--; // the same byte starts the name
          break;
        case S.EXT_NAME:
          if (TOKEN[c] === 1) break;
          if (c === 0x3d) state = S.EXT_VALUE;
          else if (c === 0x3b) state = S.EXT_START;
          else if (c === CR) state = S.SIZE_LF;
          else return this.fail('invalid chunk extension');
          break;
        case S.EXT_VALUE:
          if (TOKEN[c] === 1) break;
          if (c === 0x22) state = S.QUOTED;
          else if (c === 0x3b) state = S.EXT_START;
          else if (c === CR) state = S.SIZE_LF;
          else return this.fail('invalid chunk extension');
          break;
        case S.QUOTED:
          if (c === 0x22) state = S.QUOTED_DONE;
          else if (c === 0x5c) state = S.QPAIR;
          else if (QDTEXT[c] !== 1) return this.fail('invalid chunk extension');
          break;
        case S.QPAIR:
          if (QPAIR[c] !== 1) return this.fail('invalid chunk extension');
          state = S.QUOTED;
          break;
        case S.QUOTED_DONE:
          if (c === 0x3b) state = S.EXT_START;
          else if (c === CR) state = S.SIZE_LF;
          else return this.fail('invalid chunk extension');
          break;
        case S.SIZE_LF:
          if (c !== LF) return this.fail('bare CR after chunk size');
          this.lineBytes = 0;
          if (this.size === 0) {
            state = S.TRAILER_START;
          } else {
            this.remaining = this.size;
            this.size = 0;
            state = S.DATA;
          }
          break;
        case S.DATA_CR:
          if (c !== CR) return this.fail('chunk data longer than its size');
          state = S.DATA_LF;
          break;
        case S.DATA_LF:
          if (c !== LF) return this.fail('bare CR after chunk data');
          state = S.SIZE_START;
          break;
        case S.TRAILER_START:
          if (c === CR) {
            state = S.END_LF;
            break;
          }
          if (TOKEN[c] !== 1) return this.fail(c === 0x20 || c === 0x09 ? 'obs-fold in trailers' : 'invalid trailer field');
          this.nameLen = 0;
          this.nameAlive = ALL_REFUSED;
          this.matchName(c);
          state = S.TRAILER_NAME;
          break;
        case S.TRAILER_NAME:
          if (TOKEN[c] === 1) {
            this.matchName(c);
            break;
          }
          if (c !== 0x3a) return this.fail('invalid trailer field');
          if (this.refusedName()) return this.fail('framing or connection field in trailers');
          state = S.TRAILER_VALUE;
          break;
        case S.TRAILER_VALUE:
          if (c === CR) state = S.TRAILER_LF;
          else if (VALUE[c] !== 1) return this.fail('invalid byte in trailer value');
          break;
        case S.TRAILER_LF:
          if (c !== LF) return this.fail('bare CR in trailers');
          state = S.TRAILER_START;
          break;
        case S.END_LF:
          if (c !== LF) return this.fail('bare CR after trailers');
          this.state = S.DONE;
          return i;
        default:
          return this.fail(this.reason || 'data after the body');
      }
      if (state >= S.TRAILER_START) {
        if (++this.trailerBytes > this.limits.maxLineBytes) return this.fail('trailers too large');
      } else if (state !== S.DATA && state !== S.DATA_CR && state !== S.DATA_LF && state !== S.SIZE_START) {
        if (++this.lineBytes > this.limits.maxLineBytes) return this.fail('chunk size line too long');
      }
    }
    this.state = state;
    return BODY_CONTINUES;
  }

  private fail(reason: string): number {
    this.reason = reason;
    this.state = S.INVALID;
    return BODY_INVALID;
  }

  private matchName(c: number): void {
    const l = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
    const k = this.nameLen++;
    let alive = this.nameAlive;
    for (let j = 0; alive !== 0 && j < REFUSED_TRAILERS.length; j++) {
      const bit = 1 << j;
      if ((alive & bit) === 0) continue;
      const name = REFUSED_TRAILERS[j]!;
      if (k >= name.length || name[k] !== l) alive &= ~bit;
    }
    this.nameAlive = alive;
  }

  private refusedName(): boolean {
    for (let j = 0; j < REFUSED_TRAILERS.length; j++) {
      if ((this.nameAlive & (1 << j)) !== 0 && REFUSED_TRAILERS[j]!.length === this.nameLen) return true;
    }
    return false;
  }
}
