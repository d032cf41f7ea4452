/**
 * The DNS fast path: answers to local names encoded once per (org, name, type) and reused.
 *
 * An answer is kept as a template: the whole response for the lower-case question, every record
 * about the asked name pointing at the question (0xC00C), so that only the id, the RD bit and
 * the question's own bytes (its case, for 0x20 clients) are written per query. A query takes
 * this path only when nothing about it is unusual: a plain QUERY for one IN question of a
 * common type, no answer or authority records, at most one OPT record of EDNS version 0 with no
 * options, nothing after it, a name of plain printable labels without compression, and an
 * answer that fits the transport. Everything else (other opcodes and classes, AXFR/IXFR, EDNS
 * versions and options, extra records, oversize answers that need TC) goes the full way in
 * responder.ts. Templates are made there, on the first full answer after the org's zone changed,
 * and dropped with the org's other cached state when it changes again.
 */
import type { Answer } from 'dns-packet';
import { parseParts } from '../addressing/index.js';
import type { CounterChild } from '../observe/metrics.js';

/** Fixed by this path: what the header must say, and the types it serves. */
const QR = 0x80; // in byte 2
const OPCODE = 0x78; // in byte 2
const RD = 0x01; // in byte 2
const TYPE_OPT = 41;
const CLASS_IN = 1;
/** A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, SVCB, HTTPS, CAA. */
const FAST_TYPES = new Set([1, 2, 5, 6, 12, 15, 16, 28, 33, 64, 65, 257]);
const TYPE_CODES: Record<string, number> = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, SVCB: 64, HTTPS: 65, CAA: 257 };

const CLASSIC_UDP_SIZE = 512;
/** The largest message a TCP length prefix can carry (bigger answers are cut by the full path). */
const MAX_TCP_MESSAGE = 65_535;
/** What the full path advertises in its OPT record and the most it sends over UDP. */
const EDNS_UDP_SIZE = 1232;
/** Our OPT record: root name, type 41, class = UDP size 1232, TTL 0 (rcode 0, version 0, no flags), no data. */
const OPT_RR = Buffer.from([0, 0, TYPE_OPT, EDNS_UDP_SIZE >> 8, EDNS_UDP_SIZE & 0xff, 0, 0, 0, 0, 0, 0]);

/** What the question scan found (one reused object: the hot path allocates nothing here). */
export interface Scan {
  /** Offset just past the question (type and class included). */
  qend: number;
  /** Offset just past the name. */
  nameEnd: number;
  qtype: number;
  /** FNV-1a of the lower-case name and the type. */
  hash: number;
  edns: boolean;
  /** The largest answer the client takes over UDP. */
  maxUdp: number;
}

const scan: Scan = { qend: 0, nameEnd: 0, qtype: 0, hash: 0, edns: false, maxUdp: CLASSIC_UDP_SIZE };

/**
 * Reads the header and question of a query the fast path may answer, or null for anything
 * unusual (which the full path then handles, errors included).
 */
export function scanQuery(msg: Buffer): Scan | null {
  const len = msg.length;
  if (len < 17) return null;
  const b2 = msg[2]!;
  if ((b2 & (QR | OPCODE)) !== 0) return null;
  // qdcount 1, ancount 0, nscount 0, arcount 0 or 1
  if (msg[4] !== 0 || msg[5] !== 1 || msg[6] !== 0 || msg[7] !== 0 || msg[8] !== 0 || msg[9] !== 0 || msg[10] !== 0 || msg[11]! > 1) return null;
  let o = 12;
  let h = 0x811c9dc5;
  for (;;) {
    const l = msg[o]!;
    if (l === 0) break;
    if (l > 63 || o + l + 1 >= len) return null;
    h = Math.imul(h ^ l, 0x01000193);
    for (let i = o + 1; i <= o + l; i++) {
      let c = msg[i]!;
      // plain labels only: printable ASCII without dots or spaces
      if (c <= 0x20 || c >= 0x7f || c === 0x2e) return null;
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      h = Math.imul(h ^ c, 0x01000193);
    }
    o += l + 1;
  }
  if (o === 12 || o - 12 > 254) return null;
  const nameEnd = o + 1;
  const qend = nameEnd + 4;
  if (qend > len) return null;
  const qtype = (msg[nameEnd]! << 8) | msg[nameEnd + 1]!;
  if (!FAST_TYPES.has(qtype) || msg[nameEnd + 2] !== 0 || msg[nameEnd + 3] !== CLASS_IN) return null;
  let edns = false;
  let maxUdp = CLASSIC_UDP_SIZE;
  if (msg[11] === 1) {
    // exactly one OPT: root name, version 0, no extended rcode, no options, nothing after it
    if (qend + 11 !== len || msg[qend] !== 0 || msg[qend + 1] !== 0 || msg[qend + 2] !== TYPE_OPT) return null;
    if (msg[qend + 5] !== 0 || msg[qend + 6] !== 0 || msg[qend + 9] !== 0 || msg[qend + 10] !== 0) return null;
    edns = true;
    const size = (msg[qend + 3]! << 8) | msg[qend + 4]!;
    maxUdp = Math.min(Math.max(size, CLASSIC_UDP_SIZE), EDNS_UDP_SIZE);
  } else if (qend !== len) return null;
  scan.qend = qend;
  scan.nameEnd = nameEnd;
  scan.qtype = qtype;
  scan.hash = Math.imul(h ^ qtype, 0x01000193) >>> 0;
  scan.edns = edns;
  scan.maxUdp = maxUdp;
  return scan;
}

/** A response for one (org, lower-case name, type), ready to be copied. */
export class Template {
  constructor(
    /** The lower-case question (name, type, class) as wire bytes. */
    readonly question: Buffer,
    /** The response without OPT: header (id 0, RD clear), question, records. */
    readonly bytes: Buffer,
    /** The same with our OPT record at the end. */
    readonly ednsBytes: Buffer,
    readonly qtype: string,
    readonly rcode: number,
    /** Its answers' series of sixpn_dns_queries_total, bumped per answer. */
    readonly counter: CounterChild,
  ) {}

  /** The response to `msg` (id, RD and question bytes copied from it), or null when it does not fit. */
  answer(msg: Buffer, s: Scan, udp: boolean): Buffer | null {
    const src = s.edns ? this.ednsBytes : this.bytes;
    if (src.length > (udp ? s.maxUdp : MAX_TCP_MESSAGE)) return null;
    const out = Buffer.allocUnsafe(src.length);
    out.set(src);
    out[0] = msg[0]!;
    out[1] = msg[1]!;
    out[2] = src[2]! | (msg[2]! & RD);
    for (let i = 12; i < s.qend; i++) out[i] = msg[i]!;
    return out;
  }

  /** True when this template is for the question in msg (same name ignoring case, same type). */
  matches(msg: Buffer, s: Scan): boolean {
    const q = this.question;
    if (q.length !== s.qend - 12) return false;
    for (let i = 0; i < q.length; i++) {
      let c = msg[12 + i]!;
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      if (c !== q[i]) return false;
    }
    return true;
  }
}

/** Templates per org, bounded (a flood of random names clears an org's set, not the process). */
export class TemplateCache {
  private readonly orgs = new Map<string, Map<number, Template | Template[]>>();
  private sizes = new Map<string, number>();

  constructor(private readonly perOrg: number) {}

  get(org: string, msg: Buffer, s: Scan): Template | null {
    const slot = this.orgs.get(org)?.get(s.hash);
    if (slot === undefined) return null;
    if (!Array.isArray(slot)) return slot.matches(msg, s) ? slot : null;
    for (const t of slot) if (t.matches(msg, s)) return t;
    return null;
  }

  put(org: string, s: Scan, t: Template): void {
    let m = this.orgs.get(org);
    const size = this.sizes.get(org) ?? 0;
    if (!m || size >= this.perOrg) {
      this.orgs.set(org, (m = new Map()));
      this.sizes.set(org, 0);
    }
    const slot = m.get(s.hash);
    if (slot === undefined) m.set(s.hash, t);
    else m.set(s.hash, [...(Array.isArray(slot) ? slot : [slot]), t]);
    this.sizes.set(org, (this.sizes.get(org) ?? 0) + 1);
  }

  /** Forgets an org's templates (its zone changed), or every org's (null). */
  drop(org: string | null): void {
    if (org === null) {
      this.orgs.clear();
      this.sizes.clear();
    } else {
      this.orgs.delete(org);
      this.sizes.delete(org);
    }
  }
}

// ---- encoding ------------------------------------------------------------------------------

class Writer {
  buf = Buffer.alloc(512);
  o = 0;
  private ensure(n: number): void {
    if (this.o + n <= this.buf.length) return;
    const b = Buffer.alloc(Math.max(this.buf.length * 2, this.o + n));
    this.buf.copy(b, 0, 0, this.o);
    this.buf = b;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.o++] = v;
  }
  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16BE(v, this.o);
    this.o += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.o);
    this.o += 4;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.o);
    this.o += b.length;
  }
  /** A full (uncompressed) name from dotted text. */
  name(text: string): void {
    const t = text.endsWith('.') ? text.slice(0, -1) : text;
    if (t.length > 0) {
      for (const label of t.split('.')) {
        const l = Buffer.from(label, 'latin1');
        if (l.length === 0 || l.length > 63) throw new RangeError(`cannot encode name ${text}`);
        this.u8(l.length);
        this.bytes(l);
      }
    }
    this.u8(0);
  }
}

function sameName(a: string, b: string): boolean {
  const x = a.endsWith('.') ? a.slice(0, -1) : a;
  const y = b.endsWith('.') ? b.slice(0, -1) : b;
  return x.toLowerCase() === y.toLowerCase();
}

function record(w: Writer, r: Answer, qname: string): void {
  if (sameName(r.name, qname)) w.u16(0xc00c);
  else w.name(r.name.toLowerCase());
  const type = TYPE_CODES[r.type];
  if (type === undefined) throw new RangeError(`cannot encode a ${r.type} record`);
  w.u16(type);
  w.u16(CLASS_IN);
  w.u32((r as { ttl?: number }).ttl ?? 0);
  const lenAt = w.o;
  w.u16(0);
  const start = w.o;
  switch (r.type) {
    case 'AAAA': {
      const parts = parseParts(r.data);
      if (!parts) throw new RangeError(`cannot encode address ${r.data}`);
      for (const p of parts) w.u16(p);
      break;
    }
    case 'TXT': {
      const strings = Array.isArray(r.data) ? r.data : [r.data];
      for (const s of strings) {
        const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
        if (b.length > 255) throw new RangeError('TXT string over 255 bytes');
        w.u8(b.length);
        w.bytes(b);
      }
      break;
    }
    case 'SOA': {
      const d = r.data;
      w.name(d.mname);
      w.name(d.rname);
      w.u32(d.serial ?? 0);
      w.u32(d.refresh ?? 0);
      w.u32(d.retry ?? 0);
      w.u32(d.expire ?? 0);
      w.u32(d.minimum ?? 0);
      break;
    }
    default:
      throw new RangeError(`cannot encode a ${r.type} record`);
  }
  w.buf.writeUInt16BE(w.o - start, lenAt);
}

/**
 * Encodes the answer to the question of `msg` (as `s` scanned it) for the template: `flags` are
 * the response flags without RD (QR, AA, RA, rcode); `qname` is the question's name as text, so
 * that records about it point at the question. Null when a record cannot be encoded here.
 */
export function buildTemplate(msg: Buffer, s: Scan, qname: string, flags: number, answers: Answer[], authorities: Answer[], qtype: string, counter: CounterChild): Template | null {
  const question = Buffer.allocUnsafe(s.qend - 12);
  for (let i = 0; i < question.length; i++) {
    let c = msg[12 + i]!;
    if (i < s.nameEnd - 12 && c >= 0x41 && c <= 0x5a) c |= 0x20;
    question[i] = c;
  }
  const w = new Writer();
  w.u16(0);
  w.u16(flags);
  w.u16(1);
  w.u16(answers.length);
  w.u16(authorities.length);
  w.u16(0);
  w.bytes(question);
  try {
    for (const r of answers) record(w, r, qname);
    for (const r of authorities) record(w, r, qname);
  } catch {
    return null;
  }
  const bytes = Buffer.from(w.buf.subarray(0, w.o));
  const ednsBytes = Buffer.concat([bytes, OPT_RR]);
  ednsBytes.writeUInt16BE(1, 10);
  return new Template(question, bytes, ednsBytes, qtype, flags & 0xf, counter);
}
