/**
 * Routes the admin listener serves besides /v1 (metrics, dashboard, status). Placeholder until
 * the observability issue lands: it handles nothing.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NodeContext } from '../role.js';

/** Returns a handler that answers the request and returns true, or returns false to pass it on. */
export function observeRoutes(_ctx: NodeContext): (req: IncomingMessage, res: ServerResponse) => boolean {
  return () => false;
}
