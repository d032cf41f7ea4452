// Frames a whole byte stream with the HTTP/1 engine's parts (head parser + body reader), the
// same parts and the same decisions the forwarder makes on a socket, for the differential fuzz
// and the parser tables.
import { BODY, BODY_CONTINUES, BODY_INVALID, BodyReader, requestBody, responseBody } from '../../src/proxy/http1/framing.js';
import { HeadParser, INVALID, NEED_MORE, type HeadLimits } from '../../src/proxy/http1/head.js';

export interface EngineVerdict {
  /** The reason the engine refused the stream, or null. */
  error: string | null;
  /** Offset just past each complete message. */
  ends: number[];
  /** Why framing stopped: all bytes framed, a message that ends the connection, a switch, or a cut-off message. */
  stop: 'eof' | 'close' | 'upgrade' | 'incomplete' | 'error';
  /** For 'upgrade': where the other protocol starts. */
  stopAt: number;
  /** Where the message being read when framing stopped began. */
  lastStart: number;
  /** What each parsed head said (the failing message's too, when its head parsed). */
  heads: HeadFacts[];
}

export interface HeadFacts {
  method: string | null;
  status: number;
  minor: number;
  /** Upgrade + Connection: upgrade, as sent (the engine does not switch for h2c). */
  asksUpgrade: boolean;
  upgrade: boolean;
  chunked: boolean;
  /** Any Transfer-Encoding (responses: not chunked last means read to close). */
  transferEncoding: boolean;
  contentLength: number;
  keepAlive: boolean;
}

/**
 * Frames `bytes` as a stream of requests or responses. `cuts` (sorted offsets) splits the bytes
 * into the pieces a socket could deliver; the verdict must not depend on them.
 */
export function frameStream(
  kind: 'request' | 'response',
  bytes: Buffer,
  opts: { limits: HeadLimits; method?: string; upgradeRequested?: boolean; cuts?: number[] },
): EngineVerdict {
  const head = new HeadParser(kind, opts.limits);
  const body = new BodyReader(opts.limits.maxHeadSize);
  const ends: number[] = [];
  const heads: HeadFacts[] = [];
  let off = 0; // where the current message began
  const out = (stop: EngineVerdict['stop'], error: string | null = null, stopAt = -1): EngineVerdict => ({ error, ends, stop, stopAt, lastStart: off, heads });
  const bounds = [0, ...(opts.cuts ?? []).filter((c) => c > 0 && c < bytes.length), bytes.length];
  let inHead = true;
  let close = false;
  let upgrade = false;
  let interim = false;
  head.reset();
  for (let p = 0; p + 1 < bounds.length; p++) {
    const base = bounds[p]!;
    const piece = bytes.subarray(base, bounds[p + 1]!);
    let pos = 0;
    while (pos < piece.length) {
      if (inHead) {
        const r = head.feed(piece, pos, piece.length);
        if (r === INVALID) return out('error', head.reason);
        if (r === NEED_MORE) {
          pos = piece.length;
          break;
        }
        heads.push({
          method: head.method,
          status: head.status,
          minor: head.minor,
          asksUpgrade: head.upgradeField >= 0 && head.connectionUpgrade,
          upgrade: kind === 'request' && head.upgrade,
          chunked: head.chunked,
          transferEncoding: head.transferEncoding,
          contentLength: head.contentLength,
          keepAlive: head.keepAlive,
        });
        const k = kind === 'request' ? requestBody(head) : responseBody(head, opts.method ?? 'GET');
        if (k === BODY.SWITCH) return opts.upgradeRequested ? out('upgrade', null, base + r) : out('error', '101 without an upgrade request');
        if (k === BODY.CLOSE) {
          ends.push(bytes.length);
          return out('eof');
        }
        body.begin(k, head.contentLength);
        upgrade = kind === 'request' && head.upgrade;
        interim = k === BODY.INTERIM;
        close = !interim && !head.keepAlive;
        inHead = false;
        pos = r;
      }
      const e = body.read(piece, pos, piece.length);
      if (e === BODY_INVALID) return out('error', body.reason);
      if (e === BODY_CONTINUES) {
        pos = piece.length;
        break;
      }
      ends.push(base + e);
      off = base + e;
      pos = e;
      if (upgrade) return out('upgrade', null, off);
      if (close) return out('close', null, off);
      inHead = true;
      head.reset();
    }
  }
  if (!inHead) return out('incomplete');
  return head.partial ? out('incomplete') : out('eof');
}
