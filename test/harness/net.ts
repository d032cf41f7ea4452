/**
 * Ports and waiting: free ports from the kernel, and polling until a condition holds
 * (implemented once in ./spawn.mjs, shared with bench/).
 */
export { freePort, sleep, waitFor } from './spawn.mjs';
