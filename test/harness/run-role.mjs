// Test-only: starts one node with the named roles from a config file, using the built dist/,
// until the CLI has a command for the role. Prints "ready" and each role's describe() lines.
// usage: node test/harness/run-role.mjs CONFIG ROLE[,ROLE...]
import { loadConfig } from '../../dist/config/index.js';
import { exitOnSignals, startNode } from '../../dist/node.js';

const [file, roleList = 'dns'] = process.argv.slice(2);
const roles = roleList.split(',');
const starters = {};
for (const r of roles) {
  const mod = await import(`../../dist/${r}/index.js`);
  const name = `start${r[0].toUpperCase()}${r.slice(1)}Role`;
  starters[r] = mod[name];
}
try {
  const node = await startNode(loadConfig(file), roles, starters);
  exitOnSignals(node);
  for (const role of node.roles) for (const line of role.describe?.() ?? []) console.log(line);
  console.log('ready');
} catch (err) {
  console.error(`error: ${err.message}`);
  process.exit(1);
}
