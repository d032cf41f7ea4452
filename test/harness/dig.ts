/**
 * Runs the real `dig` and reads its answer: status, flags and records (TXT strings joined).
 */
import { run } from './procs.js';

export interface DigAnswer {
  status: string;
  flags: string[];
  /** `data` of each answer record; TXT records with their character-strings concatenated. */
  records: { name: string; ttl: number; type: string; data: string }[];
  authority: string[];
  raw: string;
}

export async function dig(server: string, port: number, name: string, type: string, opts: { source?: string; extra?: string[] } = {}): Promise<DigAnswer> {
  const args = [`@${server}`, '-p', String(port), name, type, '+tries=1', '+time=3', '+noall', '+comments', '+answer', '+authority'];
  if (opts.source) args.unshift('-b', opts.source);
  const r = await run('dig', [...args, ...(opts.extra ?? [])], { timeoutMs: 15_000, stdio: ['ignore', 'pipe', 'pipe'] });
  const raw = r.stdout + r.stderr;
  const status = /status: ([A-Z]+)/.exec(raw)?.[1] ?? `no answer (exit ${r.code}): ${raw.slice(0, 300)}`;
  const flags = (/;; flags: ([a-z ]+);/.exec(raw)?.[1] ?? '').trim().split(/\s+/);
  const records: DigAnswer['records'] = [];
  const authority: string[] = [];
  let section = '';
  for (const line of raw.split('\n')) {
    if (line.startsWith(';; ANSWER SECTION')) section = 'answer';
    else if (line.startsWith(';; AUTHORITY SECTION')) section = 'authority';
    else if (line.startsWith(';') || line.trim() === '') {
      if (line.trim() === '') section = section === 'answer' || section === 'authority' ? '' : section;
    } else if (section === 'answer') {
      const m = /^(\S+)\s+(\d+)\s+IN\s+(\S+)\s+(.*)$/.exec(line);
      if (!m) continue;
      const data = m[3] === 'TXT' ? [...m[4]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((x) => x[1]).join('') : m[4]!.trim();
      records.push({ name: m[1]!, ttl: Number(m[2]), type: m[3]!, data });
    } else if (section === 'authority') authority.push(line);
  }
  return { status, flags, records, authority, raw };
}
