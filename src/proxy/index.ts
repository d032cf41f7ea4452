/**
 * The Flycast proxy role. Placeholder until its issue lands: starting it fails with a clear error.
 */
import { ConfigError } from '../errors.js';
import type { NodeContext, RunningRole } from '../role.js';

export async function startProxyRole(_ctx: NodeContext): Promise<RunningRole> {
  throw new ConfigError('the Flycast proxy role is not built yet');
}
