/**
 * Reads a server-sent event stream over real HTTP for tests: each frame (event, id, data) goes to
 * `onFrame` until it returns true; rejects on a non-200 answer or when `timeoutMs` passes first.
 */
import { request, type IncomingMessage } from 'node:http';
import { parseFrame, type StreamEvent } from '../../src/cli/client.js';

export interface SseOptions {
  /** Called once the 200 answer arrived (the stream is registered: changes made now are seen). */
  onOpen?: (res: IncomingMessage) => void;
  timeoutMs?: number;
}

export function readSse(url: string, headers: Record<string, string>, onFrame: (f: StreamEvent) => boolean, o: SseOptions = {}): Promise<void> {
  const timeoutMs = o.timeoutMs ?? 3000;
  return new Promise((resolve, reject) => {
    let frames = 0;
    const req = request(url, { headers }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
      o.onOpen?.(res);
      let buf = '';
      res.on('data', (b: Buffer) => {
        buf += b.toString();
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = parseFrame(buf.slice(0, i));
          buf = buf.slice(i + 2);
          if (!frame) continue;
          frames++;
          if (onFrame(frame)) {
            clearTimeout(t);
            req.destroy();
            resolve();
            return;
          }
        }
      });
    });
    const t = setTimeout(() => {
      req.destroy();
      reject(new Error(`${url}: no matching frame in ${timeoutMs} ms (${frames} frames)`));
    }, timeoutMs);
    req.on('error', (err) => {
      if (!req.destroyed) reject(err);
    });
    req.end();
  });
}
