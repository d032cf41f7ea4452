#!/usr/bin/env node
/**
 * A demo machine as a program, for `sixpn machines run ... -- node dist/demo/machine-main.js`:
 * the same HTTP (or `--tcp` echo) server as the built-in demo machines, saying who it is from
 * the variables a host gives every machine (FLY_MACHINE_ID, FLY_APP_NAME, FLY_REGION), on $PORT
 * (the local driver's loopback port) or 8080, and one log line per request for `sixpn logs`.
 */
import { startDemoMachine } from './machines.js';

const env = process.env;
const kind = process.argv.includes('--tcp') ? 'tcp' : 'http';
const host = env.PORT ? '127.0.0.1' : '::';
const port = Number(env.PORT ?? (kind === 'tcp' ? 7 : 8080));
const who = { machine: { id: env.FLY_MACHINE_ID ?? 'unknown', app: env.FLY_APP_NAME ?? 'unknown', region: env.FLY_REGION ?? 'unknown' }, city: null };

startDemoMachine(who, kind, host, port, true).then(
  (m) => {
    console.log(`demo machine ${who.machine.id} of ${who.machine.app} serving ${kind} on ${m.upstream}`);
    const stop = (sig: string): void => {
      console.log(`got ${sig}, stopping`);
      void m.close().then(() => process.exit(0));
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  },
  (err: Error) => {
    console.error(`demo machine cannot listen on ${host}:${port}: ${err.message}`);
    process.exit(1);
  },
);
