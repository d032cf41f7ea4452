#!/usr/bin/env node
/**
 * `sixpn`: the command line. Node commands (up, control, proxy, dns, gateway) run roles in this
 * process; the others are flyctl-style clients of the control API. Every failure ends as one
 * `Error: <message>` line on stderr and an exit code from exitCodeFor().
 */
import { exitCodeFor, ValidationError } from '../errors.js';
import { checkOptions, parseArgv, type CliIo, type Command } from './args.js';
import { ApiClient, resolveEndpoint } from './client.js';
import { catalogCommands } from './commands/catalog.js';
import { catalogStateCommands } from './commands/catalog-state.js';
import { doctorCommands } from './commands/doctor.js';
import { hostCommands } from './commands/hosts.js';
import { nodeCommands } from './commands/node.js';
import { statusCommands } from './commands/status.js';
import { tokenCommands } from './commands/tokens.js';
import { wireguardCommands } from './commands/wireguard.js';

const COMMANDS: Command[] = [...nodeCommands, ...catalogCommands, ...catalogStateCommands, ...hostCommands, ...wireguardCommands, ...tokenCommands, ...statusCommands, ...doctorCommands];

function helpText(cmds: Command[]): string {
  const width = Math.max(...cmds.map((c) => c.usage.length > 60 ? 0 : c.usage.length));
  const lines = cmds.map((c) => (c.usage.length > 60 ? `  ${c.usage}\n  ${''.padEnd(width)}  ${c.summary}` : `  ${c.usage.padEnd(width)}  ${c.summary}`));
  return [
    'sixpn: Fly.io-style private networking (6PN) you run yourself',
    '',
    'Commands:',
    ...lines,
    '',
    'API commands find the control API and token from --api URL / --token TOKEN,',
    'else SIXPN_API_URL / SIXPN_TOKEN, else --config FILE ([control] listen and token).',
    'Listings take --json. Exit codes: 2 bad input, 3 unauthorized, 4 not found, 5 conflict,',
    '69 API or store unreachable, 78 bad config.',
    '',
  ].join('\n');
}

function findCommand(words: string[]): { cmd: Command; args: string[] } | { group: Command[] } | null {
  for (const cmd of COMMANDS) {
    if (cmd.words.every((w, i) => words[i] === w)) return { cmd, args: words.slice(cmd.words.length) };
  }
  const group = COMMANDS.filter((c) => c.words[0] === words[0]);
  return group.length ? { group } : null;
}

export async function main(argv: string[], io: CliIo): Promise<number> {
  let client: ApiClient | null = null;
  try {
    const { words, values, rest } = parseArgv(argv);
    if (words[0] === 'help') {
      words.shift();
      values.help = true;
    }
    if (words.length === 0) {
      io.out(helpText(COMMANDS));
      return values.help ? 0 : 2;
    }
    const found = findCommand(words);
    if (!found) throw new ValidationError(`unknown command ${JSON.stringify(words[0])} (see sixpn --help)`);
    if ('group' in found) {
      if (values.help) {
        io.out(helpText(found.group));
        return 0;
      }
      const sub = words[1];
      throw new ValidationError(
        `${sub === undefined ? 'missing' : `unknown`} ${words[0]} command${sub === undefined ? '' : ` ${JSON.stringify(sub)}`}; one of: ${found.group.map((c) => c.words[1]).join(', ')}`,
      );
    }
    const { cmd, args } = found;
    if (values.help) {
      io.out(`usage: ${cmd.usage}\n\n${cmd.summary}\n`);
      return 0;
    }
    checkOptions(cmd, values, args, rest);
    const code = await cmd.run({
      values,
      args,
      rest,
      io,
      client: async () => (client ??= new ApiClient(await resolveEndpoint({ api: values.api, token: values.token, config: values.config }))),
    });
    return code ?? 0;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    io.err(`Error: ${message.replace(/:\s*\n\s*/g, ': ').replace(/\s*\n\s*/g, '; ')}\n`);
    return exitCodeFor(err);
  } finally {
    await (client as ApiClient | null)?.close();
  }
}

// A reader that went away (`sixpn machines list | head -1`, a closed log pipe) ends our output,
// not the process: without a listener, EPIPE on stdout would crash a running node.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}
const io: CliIo = { out: (t) => void process.stdout.write(t), err: (t) => void process.stderr.write(t) };
main(process.argv.slice(2), io).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`Error: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
