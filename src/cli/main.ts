#!/usr/bin/env node
/**
 * `sixpn`: the command line. Node commands (up, control, proxy, dns, gateway) run roles in this
 * process; the others are flyctl-style clients of the control API. Every failure ends as one
 * `Error: <message>` line on stderr and an exit code from exitCodeFor().
 */
import { exitCodeFor, ValidationError } from '../errors.js';
import { checkOptions, parseArgv, type CliIo, type Command } from './args.js';
import type { ApiClient } from './client.js';
import { nodeCommands } from './commands/node.js';

/**
 * Every command: the node commands, then the API and host commands. Those are loaded only when
 * the words are not a node command, so that a long-running node (`sixpn proxy`) does not load and
 * keep the API client (undici), fly.toml parsing and the other commands' code (9 MiB of RSS).
 */
async function allCommands(): Promise<Command[]> {
  const [catalog, catalogState, hosts, wireguard, tokens, status, doctor] = await Promise.all([
    import('./commands/catalog.js'),
    import('./commands/catalog-state.js'),
    import('./commands/hosts.js'),
    import('./commands/wireguard.js'),
    import('./commands/tokens.js'),
    import('./commands/status.js'),
    import('./commands/doctor.js'),
  ]);
  return [
    ...nodeCommands,
    ...catalog.catalogCommands,
    ...catalogState.catalogStateCommands,
    ...hosts.hostCommands,
    ...wireguard.wireguardCommands,
    ...tokens.tokenCommands,
    ...status.statusCommands,
    ...doctor.doctorCommands,
  ];
}

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

function findCommand(commands: Command[], words: string[]): { cmd: Command; args: string[] } | { group: Command[] } | null {
  for (const cmd of commands) {
    if (cmd.words.every((w, i) => words[i] === w)) return { cmd, args: words.slice(cmd.words.length) };
  }
  const group = commands.filter((c) => c.words[0] === words[0]);
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
      io.out(helpText(await allCommands()));
      return values.help ? 0 : 2;
    }
    // Node commands come first in the full list too, so trying them alone finds the same command.
    const node = findCommand(nodeCommands, words);
    const found = node !== null && 'cmd' in node ? node : findCommand(await allCommands(), words);
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
      client: async () => {
        if (client) return client;
        const { ApiClient, resolveEndpoint } = await import('./client.js');
        return (client = new ApiClient(await resolveEndpoint({ api: values.api, token: values.token, config: values.config })));
      },
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
