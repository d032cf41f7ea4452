/**
 * The demo role: small machines for `npm start`. Placeholder until the observability issue lands.
 */
import { ConfigError } from '../errors.js';
import type { NodeContext, RunningRole } from '../role.js';

export async function startDemoRole(_ctx: NodeContext): Promise<RunningRole> {
  throw new ConfigError('the demo role is not built yet');
}
