// Writes one section of bench/RESULTS.md between markers, leaving the other sections alone,
// so that each benchmark (proxy, dns, failover, catalog, wireguard) can be rerun on its own.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';

export const RESULTS = join(dirname(fileURLToPath(import.meta.url)), '..', 'RESULTS.md');

const HEADER = `# Benchmark results

Every figure below was measured by the command shown with it, on one machine, with the reference
(direct to the backend, HAProxy, dnsmasq) measured in the same run. Figures are medians of
several runs unless a section says otherwise. Regenerate everything with \`npm run bench\`.
`;

/** A one-line description of the machine, for each section. */
export function machineLine() {
  const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  return `${os.cpus().length} x ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}`;
}

export function writeSection(topic, markdown) {
  const begin = `<!-- BEGIN ${topic} -->`;
  const end = `<!-- END ${topic} -->`;
  let text = existsSync(RESULTS) ? readFileSync(RESULTS, 'utf8') : HEADER;
  const block = `${begin}\n${markdown.trim()}\n${end}`;
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  if (i >= 0 && j > i) text = text.slice(0, i) + block + text.slice(j + end.length);
  else text = `${text.trimEnd()}\n\n${block}\n`;
  const tmp = `${RESULTS}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, RESULTS);
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/** The p-th percentile by nearest rank: the smallest sample with at least p% of them at or below it. */
export function pct(xs, p) {
  return [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)];
}
