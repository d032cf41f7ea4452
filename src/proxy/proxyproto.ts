/**
 * PROXY protocol headers (HAProxy's spec, v1 text and v2 binary) that tell a TCP machine the
 * caller's address when its service port has the `proxy_proto` handler. Pure encoders.
 */
import ipaddr from 'ipaddr.js';

export interface Endpoints {
  srcAddress: string;
  srcPort: number;
  dstAddress: string;
  dstPort: number;
}

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** Both ends as the same family: IPv4 when both are IPv4(-mapped), else IPv6. */
function family(e: Endpoints): { v4: boolean; src: ipaddr.IPv4 | ipaddr.IPv6; dst: ipaddr.IPv4 | ipaddr.IPv6 } {
  const src = ipaddr.process(e.srcAddress);
  const dst = ipaddr.process(e.dstAddress);
  if (src.kind() === 'ipv4' && dst.kind() === 'ipv4') return { v4: true, src, dst };
  const six = (a: ipaddr.IPv4 | ipaddr.IPv6): ipaddr.IPv6 => (a.kind() === 'ipv4' ? (a as ipaddr.IPv4).toIPv4MappedAddress() : (a as ipaddr.IPv6));
  return { v4: false, src: six(src), dst: six(dst) };
}

export function proxyHeaderV1(e: Endpoints): Buffer {
  const f = family(e);
  const fam = f.v4 ? 'TCP4' : 'TCP6';
  return Buffer.from(`PROXY ${fam} ${f.src.toString()} ${f.dst.toString()} ${e.srcPort} ${e.dstPort}\r\n`, 'latin1');
}

export function proxyHeaderV2(e: Endpoints): Buffer {
  const f = family(e);
  const addrLen = f.v4 ? 12 : 36;
  const buf = Buffer.alloc(16 + addrLen);
  V2_SIGNATURE.copy(buf, 0);
  buf[12] = 0x21; // version 2, PROXY command
  buf[13] = f.v4 ? 0x11 : 0x21; // TCP over IPv4 / IPv6
  buf.writeUInt16BE(addrLen, 14);
  const src = f.src.toByteArray();
  const dst = f.dst.toByteArray();
  Buffer.from(src).copy(buf, 16);
  Buffer.from(dst).copy(buf, 16 + src.length);
  buf.writeUInt16BE(e.srcPort, 16 + src.length * 2);
  buf.writeUInt16BE(e.dstPort, 18 + src.length * 2);
  return buf;
}

export function proxyHeader(version: 'v1' | 'v2', e: Endpoints): Buffer {
  return version === 'v2' ? proxyHeaderV2(e) : proxyHeaderV1(e);
}
