/**
 * Closing a caller connection without losing what was written to it, and without keeping it.
 *
 * Closing a socket that still has unread input makes the kernel send a reset, and a reset can
 * make the peer drop the response it has not read yet (a 400 after pipelined bytes, a reply to
 * an HTTP/1.0 request followed by more). So the proxy ends its side, keeps reading (and
 * dropping) what comes in, and destroys the socket when the caller ends its side too or after
 * LINGER_MS at most: a caller that never closes cannot hold the descriptor (HAProxy and Apache
 * call this a lingering close).
 */
import type net from 'node:net';

/** Longest a closed caller connection is kept open for reading after the proxy's last byte. */
export const LINGER_MS = 1_000;

const LINGERING = Symbol('sixpn.lingering');
type Lingering = net.Socket & { [LINGERING]?: NodeJS.Timeout };

function destroySelf(this: net.Socket): void {
  this.destroy();
}
/** The caller ended its side: go as soon as our last bytes are handed to the kernel. */
function onCallerEnd(this: net.Socket): void {
  if (this.writableFinished) this.destroy();
  else this.once('finish', destroySelf);
}
function clearLinger(this: Lingering): void {
  clearTimeout(this[LINGERING]);
}

/** True once `lingerClose` started on the socket (it is on its way out). */
export function isLingering(socket: net.Socket): boolean {
  return (socket as Lingering)[LINGERING] !== undefined || socket.destroyed;
}

/** Ends the socket after `last` (if given), drains its input, destroys it within LINGER_MS. */
export function lingerClose(socket: net.Socket, last?: string): void {
  const s = socket as Lingering;
  if (s.destroyed || s[LINGERING] !== undefined) return;
  s[LINGERING] = setTimeout(destroySelf.bind(s), LINGER_MS);
  s.once('close', clearLinger);
  if (last === undefined) s.end();
  else s.end(last);
  // The caller already ended its side: nothing left to drain once our bytes are out.
  if (s.readableEnded) onCallerEnd.call(s);
  else {
    s.once('end', onCallerEnd);
    s.resume();
  }
}

/**
 * Installed as a caller socket's `destroySoon`, which node's HTTP server calls after the last
 * response of a connection: the close then lingers instead of resetting unread input.
 */
export function lingerDestroySoon(this: net.Socket): void {
  lingerClose(this);
}
