/**
 * The .internal DNS role. Placeholder until its issue lands: starting it fails with a clear error.
 */
import { ConfigError } from '../errors.js';
import type { NodeContext, RunningRole } from '../role.js';

export async function startDnsRole(_ctx: NodeContext): Promise<RunningRole> {
  throw new ConfigError('the .internal DNS role is not built yet');
}
