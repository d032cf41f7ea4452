/**
 * From one DNS message (bytes) and the address that sent it to the answer (bytes).
 *
 * Order of checks: a response, or fewer than 4 bytes, is dropped; less than a header is FORMERR;
 * other opcodes get NOTIMP, qdcount other than 1 (or records in the answer and authority sections)
 * FORMERR, all read from the header before decoding, so that even a broken body gets its id back; then the asker's org from the source address (none: REFUSED,
 * for forwarded names too: never an open resolver); then the codec (dns-packet) decodes, and
 * anything it cannot read is FORMERR. Local names are answered from the org's zone; an answer
 * that depends on the org and the question only is kept as a template (fastpath.ts) until a
 * change touches that org, and ordinary queries for it are then answered without decoding.
 */
import * as packet from 'dns-packet';
import type { Answer, OptAnswer, Packet } from 'dns-packet';
import { orgOf } from '../addressing/index.js';
import type { Org } from '../catalog/types.js';
import type { Logger } from '../observe/log.js';
import type { RegionTable } from '../regions/index.js';
import type { Forwarder } from './forward.js';
import { buildTemplate, scanQuery, TemplateCache } from './fastpath.js';
import { dnsDuration, qtypeLabel, queryCounter } from './metrics.js';
import { localZoneOf, resolveLocal } from './resolve.js';
import type { DnsIndex } from './zone.js';

export type Transport = 'udp' | 'tcp';

const localDuration = dnsDuration.labels('local');
const forwardDuration = dnsDuration.labels('forward');

const QR = 0x8000;
const AA = 0x0400;
const TC = 0x0200;
const RD = 0x0100;
const RA = 0x0080;
const OPCODE_MASK = 0x7800;

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];
const rcodeName = (r: number): string => RCODE_NAMES[r] ?? 'other';

/** Plain DNS over UDP without EDNS. */
const CLASSIC_UDP_SIZE = 512;
/** What we advertise and the most we send over UDP (the DNS flag day 2020 default). */
export const EDNS_UDP_SIZE = 1232;
const OPT: Answer = { type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_SIZE, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] };
/** Extended rcode 16: the upper 8 bits (1) go in the OPT record, the lower 4 (0) in the header. */
const BADVERS = 16;
const BADVERS_OPT: Answer = { ...OPT, extendedRcode: BADVERS >> 4 };
/** The largest DNS message a TCP length prefix can carry. */
const MAX_TCP_MESSAGE = 65_535;

/** dns-packet's one-record encoder (exported, missing from its type declarations). */
const record = (packet as unknown as { answer: { encode(a: Answer): Buffer } }).answer;

/** An answer record whose owner is the question's name, written as a pointer to it. */
function encodeAtQuestion(a: Answer): Buffer {
  // Encoded with the root name (one zero byte), which is then swapped for the 2-byte pointer.
  const b = record.encode({ ...a, name: '.' } as Answer);
  const out = Buffer.allocUnsafe(b.length + 1);
  out.writeUInt16BE(0xc00c, 0);
  b.copy(out, 2, 1);
  return out;
}
const TEMPLATES_PER_ORG = 4096;
const ORG_CACHE_SIZE = 8192;

export interface ResponderOptions {
  index: DnsIndex;
  regions: RegionTable;
  ttl: number;
  /** Region used for `nearest` when the asker's own region is unknown. */
  nodeRegion: string;
  /** Development: org whose member a loopback source is taken to be. */
  loopbackOrg: string;
  forwarder: Forwarder | null;
  log: Logger;
}

/** A header-only reply (id, opcode and RD echoed) for messages we will not decode. */
function headerReply(msg: Buffer, rcode: number): Buffer {
  const out = Buffer.alloc(12);
  msg.copy(out, 0, 0, 2);
  const flags = msg.length >= 4 ? msg.readUInt16BE(2) : 0;
  out.writeUInt16BE(QR | (flags & (OPCODE_MASK | RD)) | rcode, 2);
  return out;
}

/**
 * Where the (only) question ends, read from the raw bytes, and whether its name is plain: every
 * label printable ASCII without dots. Answers copy these bytes instead of re-encoding the decoded
 * text, which would not give back the same name for odd labels. null: the question name is
 * compressed (no real client does that) or runs past the message.
 */
function scanQuestion(msg: Buffer): { end: number; plain: boolean } | null {
  let o = 12;
  let plain = true;
  for (;;) {
    if (o >= msg.length) return null;
    const len = msg[o]!;
    if (len === 0) break;
    if (len > 63) return null;
    for (let i = o + 1; i <= o + len && i < msg.length; i++) {
      const b = msg[i]!;
      if (b <= 0x20 || b >= 0x7f || b === 0x2e) plain = false;
    }
    o += len + 1;
  }
  const end = o + 5;
  return end <= msg.length ? { end, plain } : null;
}

const QTYPE_IXFR = 251;
const QTYPE_AXFR = 252;

/** The type of an AXFR or IXFR question and where it ends; null for any other query (or no readable question). */
function transferQuestion(msg: Buffer): { qtype: 'AXFR' | 'IXFR'; end: number } | null {
  const scanned = scanQuestion(msg);
  if (!scanned) return null;
  const qtype = msg.readUInt16BE(scanned.end - 4);
  if (qtype === QTYPE_AXFR) return { qtype: 'AXFR', end: scanned.end };
  return qtype === QTYPE_IXFR ? { qtype: 'IXFR', end: scanned.end } : null;
}

/** A reply with the query's question and no records. */
function questionReply(msg: Buffer, questionEnd: number, rcode: number): Buffer {
  const out = Buffer.alloc(questionEnd);
  msg.copy(out, 0, 0, questionEnd);
  const flags = msg.readUInt16BE(2);
  out.writeUInt16BE(QR | (flags & (OPCODE_MASK | RD)) | rcode, 2);
  out.writeUInt16BE(1, 4);
  out.fill(0, 6, 12); // no answer, authority or additional records
  return out;
}

function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

export class Responder {
  /** Source address -> network id (null: outside every org); pure, so cached. */
  private readonly orgIds = new Map<string, number | null>();
  /** Encoded local answers per org, name and type (fastpath.ts), dropped when the org changes. */
  private readonly templates = new TemplateCache(TEMPLATES_PER_ORG);
  private readonly unsubscribe: () => void;

  constructor(private readonly o: ResponderOptions) {
    this.unsubscribe = o.index.onInvalidate((org) => this.templates.drop(org));
  }

  close(): void {
    this.unsubscribe();
    this.templates.drop(null);
  }

  /** The org a source address belongs to, if any (loopback: the configured dev org). */
  askerOrg(address: string): Org | undefined {
    if (this.o.loopbackOrg && isLoopback(address)) return this.o.index.orgByName(this.o.loopbackOrg);
    let id = this.orgIds.get(address);
    if (id === undefined) {
      if (this.orgIds.size >= ORG_CACHE_SIZE) this.orgIds.clear();
      id = orgOf(address);
      this.orgIds.set(address, id);
    }
    return id === null ? undefined : this.o.index.orgByNetworkId(id);
  }

  /**
   * The answer to `msg` from `source`, or null when nothing should be sent (responses, runts).
   * Synchronous for local names; a promise when the query is forwarded.
   */
  answer(msg: Buffer, source: string, transport: Transport): Buffer | null | Promise<Buffer> {
    // Fast path: an ordinary question about a local name answered before: copy and patch.
    const t0 = performance.now();
    const fast = scanQuery(msg);
    if (fast !== null) {
      const org = this.askerOrg(source);
      const t = org ? this.templates.get(org.name, msg, fast) : null;
      const out = t ? t.answer(msg, fast, transport === 'udp') : null;
      if (out !== null) {
        t!.counter.inc();
        localDuration.observe((performance.now() - t0) / 1000);
        return out;
      }
    }
    const started = process.hrtime.bigint();
    if (msg.length < 12) {
      if (msg.length < 4 || msg.readUInt16BE(2) & QR) return null;
      return this.done(headerReply(msg, RCODE.FORMERR), undefined, started, 'local');
    }
    const flags = msg.readUInt16BE(2);
    if (flags & QR) return null;
    if (flags & OPCODE_MASK) return this.done(headerReply(msg, RCODE.NOTIMP), undefined, started, 'local');
    // A zone transfer request (an IXFR carries the client's SOA in its authority section) is
    // refused for every name, local or forwarded: no zone is transferred.
    const transfer = msg.readUInt16BE(4) === 1 ? transferQuestion(msg) : null;
    if (transfer) return this.done(questionReply(msg, transfer.end, RCODE.REFUSED), transfer.qtype, started, 'local');
    // One question; a query carries no answer or authority records, and at most OPT + one more
    // additional (a signature we ignore). Checked before decoding: the codec would walk them.
    if (msg.readUInt16BE(4) !== 1 || msg.readUInt16BE(6) !== 0 || msg.readUInt16BE(8) !== 0 || msg.readUInt16BE(10) > 2) {
      return this.done(headerReply(msg, RCODE.FORMERR), undefined, started, 'local');
    }

    const org = this.askerOrg(source);

    let query: Packet;
    try {
      query = packet.decode(msg);
    } catch {
      return this.done(headerReply(msg, RCODE.FORMERR), undefined, started, 'local');
    }
    const q = query.questions?.[0];
    const scanned = scanQuestion(msg);
    if (!q || !scanned) return this.done(headerReply(msg, RCODE.FORMERR), undefined, started, 'local');
    const rawQuestion = msg.subarray(12, scanned.end);
    const opts = query.additionals?.filter((a): a is OptAnswer => a.type === 'OPT') ?? [];
    // RFC 6891: more than one OPT record is a format error; a version we do not speak gets
    // BADVERS (extended rcode 16) with an OPT naming the version we do (0).
    if (opts.length > 1) return this.done(headerReply(msg, RCODE.FORMERR), q.type, started, 'local');
    const opt = opts[0];
    const maxUdp = opt ? Math.min(Math.max(opt.udpPayloadSize ?? CLASSIC_UDP_SIZE, CLASSIC_UDP_SIZE), EDNS_UDP_SIZE) : CLASSIC_UDP_SIZE;
    const reply = (rcode: number, answers: Answer[], authorities: Answer[], extra: number): Buffer =>
      this.encode(query, rawQuestion, rcode, answers, authorities, extra, opt !== undefined, transport, maxUdp);
    if (opt && opt.ednsVersion !== 0) {
      return this.done(this.encode(query, rawQuestion, BADVERS & 0xf, [], [], 0, BADVERS_OPT, transport, maxUdp), q.type, started, 'local', 'BADVERS');
    }

    if (!org) return this.done(reply(RCODE.REFUSED, [], [], 0), q.type, started, 'local');
    if (q.class !== 'IN' && q.class !== 'ANY') return this.done(reply(RCODE.REFUSED, [], [], 0), q.type, started, 'local');

    const zoneName = localZoneOf(q.name.toLowerCase());
    if (zoneName === null) return this.forward(msg, reply, q.type, started, transport);

    const zone = this.o.index.zone(org.name);
    if (!zone) return this.done(reply(RCODE.REFUSED, [], [], 0), q.type, started, 'local');
    const region = this.o.index.regionOf(source) ?? this.o.nodeRegion;
    // A name with odd bytes in its labels cannot be one of ours (and its text is not its bytes).
    const name = scanned.plain ? q.name : `-.${zoneName}`;
    const r = resolveLocal({ name, type: q.type }, zone, region, { ttl: this.o.ttl, regions: this.o.regions });
    // An answer that depends only on the org and the question becomes a template for the fast
    // path (when the question is one that path takes), and this query is answered from it.
    if (r.cacheable && fast !== null && scanned.plain) {
      const ra = this.o.forwarder && this.o.forwarder.upstreams.length ? RA : 0;
      let t = this.templates.get(org.name, msg, fast);
      if (!t) {
        t = buildTemplate(msg, fast, q.name, QR | AA | ra | RCODE[r.rcode], r.answers, r.authorities, q.type, queryCounter(qtypeLabel(q.type), r.rcode));
        if (t) this.templates.put(org.name, fast, t);
      }
      if (t) {
        const out = t.answer(msg, fast, transport === 'udp');
        if (out) return this.done(out, q.type, started, 'local');
      }
    }
    return this.done(reply(RCODE[r.rcode], r.answers, r.authorities, AA), q.type, started, 'local');
  }

  private forward(msg: Buffer, reply: (rcode: number, a: Answer[], b: Answer[], extra: number) => Buffer, qtype: string, started: bigint, transport: Transport): Buffer | Promise<Buffer> {
    const fwd = this.o.forwarder;
    // Without upstreams this server does not recurse: refuse rather than pretend to fail.
    if (!fwd || fwd.upstreams.length === 0) return this.done(reply(RCODE.REFUSED, [], [], 0), qtype, started, 'local');
    const p = transport === 'udp' ? fwd.udp(msg) : fwd.tcp(msg);
    return p.then(
      (answer) => this.done(answer, qtype, started, 'forward'),
      () => this.done(reply(RCODE.SERVFAIL, [], [], RA), qtype, started, 'forward'),
    );
  }

  /**
   * Builds the answer: header, the query's own question bytes, then the records. Every answer
   * record carries the question's name, so it is written as a pointer to it (offset 12): that
   * is what lets 2,000 AAAA records fit one 64 KiB TCP message. When the records do not fit,
   * UDP gets TC and no records (the client retries over TCP); TCP gets as many answers as fit,
   * with TC.
   */
  private encode(query: Packet, rawQuestion: Buffer, rcode: number, answers: Answer[], authorities: Answer[], extra: number, opt: Answer | boolean, transport: Transport, maxUdp = CLASSIC_UDP_SIZE): Buffer {
    const ra = this.o.forwarder && this.o.forwarder.upstreams.length ? RA : 0;
    const flags = ((query.flags ?? 0) & RD) | extra | ra | rcode;
    const max = transport === 'udp' ? maxUdp : MAX_TCP_MESSAGE;
    const additional = opt === false ? null : record.encode(opt === true ? OPT : opt);
    const fixed = 12 + rawQuestion.length + (additional?.length ?? 0);
    const ans = answers.map(encodeAtQuestion);
    const auth = authorities.map((a) => record.encode(a));
    let size = fixed;
    for (const b of ans) size += b.length;
    for (const b of auth) size += b.length;
    let truncated = false;
    if (size > max) {
      truncated = true;
      auth.length = 0;
      if (transport === 'udp') ans.length = 0;
      else {
        let n = 0;
        for (size = fixed; n < ans.length && size + ans[n]!.length <= max; n++) size += ans[n]!.length;
        ans.length = n;
      }
    }
    const parts = [rawQuestion, ...ans, ...auth, ...(additional ? [additional] : [])];
    const head = Buffer.alloc(12);
    head.writeUInt16BE(query.id ?? 0, 0);
    head.writeUInt16BE(QR | flags | (truncated ? TC : 0), 2);
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(ans.length, 6);
    head.writeUInt16BE(auth.length, 8);
    head.writeUInt16BE(additional ? 1 : 0, 10);
    return Buffer.concat([head, ...parts]);
  }

  private done(out: Buffer, qtype: string | undefined, started: bigint, source: 'local' | 'forward', rcode?: string): Buffer {
    queryCounter(qtypeLabel(qtype), rcode ?? rcodeName(out.readUInt16BE(2) & 0xf)).inc();
    (source === 'local' ? localDuration : forwardDuration).observe(Number(process.hrtime.bigint() - started) / 1e9);
    return out;
  }
}
