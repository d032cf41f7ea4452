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
import type { Answer, Packet } from 'dns-packet';
import { orgOf } from '../addressing/index.js';
import type { Org } from '../catalog/types.js';
import type { Logger } from '../observe/log.js';
import type { RegionTable } from '../regions/index.js';
import type { Forwarder } from './forward.js';
import { buildTemplate, scanQuery, TemplateCache } from './fastpath.js';
import { countQuery, dnsDuration, observeFast, qtypeLabel, queryTally } from './metrics.js';
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
        t!.tally.n++;
        observeFast((performance.now() - t0) / 1000);
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
    const opt = query.additionals?.find((a) => a.type === 'OPT');
    const maxUdp = opt && 'udpPayloadSize' in opt ? Math.min(Math.max(opt.udpPayloadSize ?? CLASSIC_UDP_SIZE, CLASSIC_UDP_SIZE), EDNS_UDP_SIZE) : CLASSIC_UDP_SIZE;
    const reply = (rcode: number, answers: Answer[], authorities: Answer[], extra: number): Buffer =>
      this.encode(query, rawQuestion, rcode, answers, authorities, extra, opt !== undefined, transport === 'udp' ? maxUdp : 65_535);

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
        t = buildTemplate(msg, fast, q.name, QR | AA | ra | RCODE[r.rcode], r.answers, r.authorities, q.type, queryTally(qtypeLabel(q.type), r.rcode));
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

  /** Encodes the answer with the codec, then puts the query's own question bytes in. */
  private encode(query: Packet, rawQuestion: Buffer, rcode: number, answers: Answer[], authorities: Answer[], extra: number, edns: boolean, max: number): Buffer {
    const ra = this.o.forwarder && this.o.forwarder.upstreams.length ? RA : 0;
    const flags = (query.flags ?? 0) & RD;
    const additionals: Answer[] = edns ? [OPT] : [];
    const base = { id: query.id ?? 0, type: 'response' as const, questions: [], additionals };
    let body = packet.encode({ ...base, flags: flags | extra | ra | rcode, answers, authorities });
    if (body.length + rawQuestion.length > max) body = packet.encode({ ...base, flags: flags | extra | ra | rcode | TC, answers: [], authorities: [] });
    const out = Buffer.allocUnsafe(body.length + rawQuestion.length);
    body.copy(out, 0, 0, 12);
    rawQuestion.copy(out, 12);
    body.copy(out, 12 + rawQuestion.length, 12);
    out.writeUInt16BE(1, 4);
    return out;
  }

  private done(out: Buffer, qtype: string | undefined, started: bigint, source: 'local' | 'forward'): Buffer {
    countQuery(qtypeLabel(qtype), rcodeName(out.readUInt16BE(2) & 0xf));
    (source === 'local' ? localDuration : forwardDuration).observe(Number(process.hrtime.bigint() - started) / 1e9);
    return out;
  }
}
