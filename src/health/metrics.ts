/**
 * The checker's metrics. Labels stay bounded: results and statuses are fixed sets, and the
 * per-machine gauge has one series per machine this node checks (dropped when it goes).
 */
import { counter, gauge } from '../observe/metrics.js';

export const checksTotal = counter({
  name: 'sixpn_health_checks_total',
  help: 'Active health checks run, by result (pass, fail)',
  labelNames: ['result'] as const,
});

export const machineHealthy = gauge({
  name: 'sixpn_health_machine_healthy',
  help: 'Verdict of the active checks of a machine this node checks: 1 healthy, 0 unhealthy',
  labelNames: ['app', 'machine'] as const,
});

export const transitionsTotal = counter({
  name: 'sixpn_health_transitions_total',
  help: 'Machine health transitions decided by this node, by new status',
  labelNames: ['to'] as const,
});

export const storeWriteErrorsTotal = counter({
  name: 'sixpn_health_store_write_errors_total',
  help: 'Failed writes of a health transition to the catalog store (retried)',
});
