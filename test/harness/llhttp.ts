// Node's own HTTP/1 parser (llhttp, strict: no lenient flags) driven directly through the
// HTTPParser binding node:http uses (`_http_common`), as the reference for the engine's parser.
// Synchronous and in-process: the fuzz can ask it hundreds of thousands of questions in seconds.
import { createRequire } from 'node:module';

interface NodeHttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(buf: Buffer): number | (Error & { code?: string; bytesParsed?: number });
  finish(): undefined | (Error & { code?: string });
  [k: number]: unknown;
}
interface ParserClass {
  new (): NodeHttpParser;
  REQUEST: number;
  RESPONSE: number;
  kOnHeadersComplete: number;
  kOnMessageComplete: number;
  kOnBody: number;
  kOnHeaders: number;
  kLenientNone: number;
}

const { HTTPParser } = createRequire(import.meta.url)('_http_common') as { HTTPParser: ParserClass };

export interface LlhttpVerdict {
  /** null when every byte was accepted (a message may still be unfinished: see `finished`). */
  error: string | null;
  /** Messages completed. */
  messages: number;
  /** Per message head: upgrade flag and keep-alive as llhttp saw them. */
  upgrade: boolean[];
  keepAlive: boolean[];
  /** Status codes of the response heads. */
  statuses: number[];
  /** Where the upgraded protocol starts, when a message upgraded the connection. */
  upgradeAt: number;
}

export class Llhttp {
  private readonly parser = new HTTPParser();
  private messages = 0;
  private upgrade: boolean[] = [];
  private keepAlive: boolean[] = [];
  private statuses: number[] = [];
  private skipBody = false;
  private upgraded = false;

  constructor(private readonly maxHeaderSize: number) {
    const p = this.parser;
    p[HTTPParser.kOnHeadersComplete] = (_maj: number, _min: number, _h: unknown, _m: unknown, _u: unknown, status: number, _msg: unknown, upgrade: boolean, ka: boolean): number => {
      this.upgrade.push(upgrade);
      this.statuses.push(status);
      this.keepAlive.push(ka);
      return this.skipBody ? 1 : 0;
    };
    p[HTTPParser.kOnMessageComplete] = (): void => {
      this.messages++;
      if (this.upgrade[this.upgrade.length - 1] === true || this.statuses[this.statuses.length - 1] === 101) this.upgraded = true;
    };
    p[HTTPParser.kOnBody] = (): void => undefined;
    p[HTTPParser.kOnHeaders] = (): void => undefined;
  }

  /**
   * Parses `bytes` (or its first `length` bytes) as requests or as responses (to HEAD when
   * `head`), then signals EOF when `eof`.
   */
  run(kind: 'request' | 'response', bytes: Buffer, { head = false, eof = true, length = bytes.length } = {}): LlhttpVerdict {
    const p = this.parser;
    p.initialize(kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE, {}, this.maxHeaderSize, HTTPParser.kLenientNone);
    this.messages = 0;
    this.upgrade = [];
    this.keepAlive = [];
    this.statuses = [];
    this.upgraded = false;
    this.skipBody = head;
    const input = length === bytes.length ? bytes : bytes.subarray(0, length);
    // An empty buffer reaches the binding as no data, which answers undefined.
    const r = input.length === 0 ? 0 : p.execute(input);
    if (typeof r !== 'number') return this.verdict(r.code ?? 'error', -1);
    // llhttp stops at an upgrade: the bytes after it (r) belong to the other protocol.
    if (r < input.length || this.upgraded) return this.verdict(null, r);
    if (eof) {
      const f = p.finish();
      if (f) return this.verdict(f.code ?? 'error', -1);
    }
    return this.verdict(null, -1);
  }

  private verdict(error: string | null, upgradeAt: number): LlhttpVerdict {
    return { error, messages: this.messages, upgrade: this.upgrade, keepAlive: this.keepAlive, statuses: this.statuses, upgradeAt };
  }
}
