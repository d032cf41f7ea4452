/**
 * Metrics both catalog stores report.
 */
import { gauge } from '../observe/metrics.js';

/** Set at each load (embedded) or snapshot (Redis): entries skipped because they fail their check. */
export const invalidEntries = gauge({
  name: 'sixpn_catalog_invalid_entries',
  help: 'Stored catalog entries skipped because they fail validation (each is logged with the reason).',
});
