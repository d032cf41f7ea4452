/**
 * Reused read buffers for sockets a server accepted. node offers `onread` (read into a buffer
 * the caller owns, callback instead of 'data') only to sockets it dials; an accepted socket gets
 * a fresh 64 KiB allocation per read, shrunk and collected later, which on a bulk upload or a busy
 * HTTP connection is most of the proxy's garbage. node's net.Socket keeps its `onread` state in
 * three symbol-keyed properties read by its stream code on every read; this module finds those
 * symbols once on a probe socket and sets them (and the handle's user buffer) on an accepted socket,
 * so node's own read path, pause()/resume() and end-of-stream work as for a dialed socket.
 *
 * The symbols are node internals: `readBuffersSupported` says whether they were found; without them
 * `useReadBuffer` returns false and callers keep 'data' events (the unit test fails if this node lost them).
 *
 * Buffer switching uses node's generator hook with one shared generator: the read callback stores
 * the buffer for the socket's next read in `setNextReadBuffer` just before node asks the generator,
 * in the same synchronous step, so no closure per socket is needed.
 */
import net from 'node:net';

/** Called with the byte count and the socket's buffer; false stops reading until resume(). */
export type ReadCallback = (this: net.Socket, n: number, buf: Buffer) => boolean;

type Handle = { useUserBuffer?: (b: Uint8Array) => void };

const keys = ((): { buffer: symbol; callback: symbol; gen: symbol } | null => {
  // The constructor takes `onread` (node's types list it for net.connect only).
  const probe = new net.Socket({ onread: { buffer: () => Buffer.alloc(1), callback: () => true } } as net.SocketConstructorOpts);
  const found = new Map<string | undefined, symbol>();
  for (const s of Object.getOwnPropertySymbols(probe)) found.set(s.description, s);
  const buffer = found.get('kBuffer');
  const callback = found.get('kBufferCb');
  const gen = found.get('kBufferGen');
  probe.destroy();
  return buffer && callback && gen ? { buffer, callback, gen } : null;
})();

export const readBuffersSupported = keys !== null;

let next: Buffer | null = null;
/** node asks for the buffer of the next read right after the callback returned. */
function nextBuffer(): Buffer | null {
  const b = next;
  next = null;
  return b;
}

/**
 * From within a read callback: read the socket's next bytes into `buf` instead of the buffer just
 * used (because a write still holds that one).
 */
export function setNextReadBuffer(buf: Buffer): void {
  next = buf;
}

/**
 * Makes the accepted socket read into `buf` and call `callback` instead of emitting 'data'.
 * Must be called in the tick the socket was accepted (before its first read). Returns false
 * (and changes nothing) where this node does not support it.
 */
export function useReadBuffer(socket: net.Socket, buf: Buffer, callback: ReadCallback): boolean {
  const handle = (socket as unknown as { _handle: Handle | null })._handle;
  if (keys === null || handle === null || typeof handle.useUserBuffer !== 'function') return false;
  const s = socket as unknown as Record<symbol, unknown>;
  s[keys.buffer] = buf;
  s[keys.callback] = callback;
  s[keys.gen] = nextBuffer;
  handle.useUserBuffer(buf);
  return true;
}
