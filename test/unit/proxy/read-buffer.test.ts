// Reused read buffers on accepted sockets (src/proxy/read-buffer.ts) over real loopback sockets:
// bytes arrive in the caller's buffer in order, switching buffers mid-stream keeps every byte,
// back-pressure (false) stops and resume() restarts reading, and EOF still ends the socket.
import net from 'node:net';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { readBuffersSupported, setNextReadBuffer, useReadBuffer } from '../../../src/proxy/read-buffer.js';

function serve(onSocket: (s: net.Socket) => void): Promise<{ port: number; close: () => void }> {
  return new Promise((resolve) => {
    const server = net.createServer({ allowHalfOpen: true }, onSocket);
    server.listen(0, '127.0.0.1', () => resolve({ port: (server.address() as net.AddressInfo).port, close: () => server.close() }));
  });
}

describe('read buffers for accepted sockets', () => {
  it('is supported by this node (the proxy would fall back to a 64 KiB allocation per read)', () => {
    expect(readBuffersSupported).toBe(true);
  });

  it('delivers every byte in order into the given buffers, switching buffers and pausing on false', async () => {
    const sent = Buffer.alloc(5 * 2 ** 20);
    for (let i = 0; i < sent.length; i++) sent[i] = (i * 7919) >>> 3;
    const first = Buffer.alloc(4096);
    const used = new Set<Buffer>();
    const hash = createHash('sha256');
    let got = 0;
    let reads = 0;
    let paused = 0;
    const done = new Promise<{ ended: boolean }>((resolve) => {
      void serve((s) => {
        expect(useReadBuffer(s, first, function (this: net.Socket, n: number, buf: Buffer) {
          used.add(buf);
          hash.update(buf.subarray(0, n));
          got += n;
          reads++;
          // Every 5th read moves to a new buffer; every 7th stops reading for a while.
          if (reads % 5 === 0) setNextReadBuffer(Buffer.alloc(8192 + reads));
          if (reads % 7 === 0) {
            paused++;
            setTimeout(() => this.resume(), 2);
            return false;
          }
          return true;
        })).toBe(true);
        s.on('data', () => {
          throw new Error('no data events when reading into own buffers');
        });
        s.on('end', () => {
          s.end();
          resolve({ ended: true });
        });
      }).then(({ port, close }) => {
        const c = net.connect(port, '127.0.0.1', () => c.end(sent));
        c.resume();
        c.on('close', close);
      });
    });
    const r = await done;
    expect(r.ended).toBe(true);
    expect(got).toBe(sent.length);
    expect(hash.digest('hex')).toBe(createHash('sha256').update(sent).digest('hex'));
    expect(used.has(first)).toBe(true);
    expect(used.size).toBeGreaterThan(2);
    expect(paused).toBeGreaterThan(0);
  });

  it('leaves a socket without a handle alone', () => {
    const s = new net.Socket();
    expect(useReadBuffer(s, Buffer.alloc(16), () => true)).toBe(false);
    s.destroy();
  });
});
