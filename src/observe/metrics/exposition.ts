/**
 * The Prometheus text format (0.0.4) of a registry snapshot, laid out as prom-client wrote it
 * (so /metrics reads the same as before sixpn had its own registry): `# HELP` and `# TYPE` per
 * metric, one line per series with labels in the metric's label order, histogram buckets
 * cumulative with `le` first, a blank line between metrics.
 */
import { numberOf, spellNonFinite, type FamilySnapshot } from './snapshot.js';

/** Integers and decimals as JavaScript prints them; NaN and the infinities as Prometheus spells them. */
export function formatValue(v: number): string {
  return Number.isFinite(v) ? `${v}` : spellNonFinite(v);
}

const HELP_SPECIAL = /[\\\n]/;
const LABEL_SPECIAL = /[\\\n"]/;

export function escapeHelp(s: string): string {
  return HELP_SPECIAL.test(s) ? s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n') : s;
}

export function escapeLabelValue(s: string): string {
  return LABEL_SPECIAL.test(s) ? s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"') : s;
}

/** `a="x",b="y"` for the label names in order ('' without labels). */
function pairs(labelNames: readonly string[], labels: Readonly<Record<string, string>>): string {
  let out = '';
  for (const l of labelNames) out += `${out === '' ? '' : ','}${l}="${escapeLabelValue(labels[l] ?? '')}"`;
  return out;
}

export function exposition(families: readonly FamilySnapshot[]): string {
  const blocks: string[] = [];
  for (const f of families) {
    const lines = [`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`];
    if (f.type === 'histogram') {
      const les = f.buckets.map((b) => `le="${formatValue(b)}"`);
      les.push('le="+Inf"');
      for (const s of f.series) {
        const p = pairs(f.labelNames, s.labels);
        const rest = p === '' ? '' : `,${p}`;
        let acc = 0;
        for (let i = 0; i < les.length; i++) {
          acc += s.counts[i]!;
          lines.push(`${f.name}_bucket{${les[i]}${rest}} ${formatValue(acc)}`);
        }
        const braces = p === '' ? '' : `{${p}}`;
        lines.push(`${f.name}_sum${braces} ${formatValue(s.sum)}`, `${f.name}_count${braces} ${formatValue(acc)}`);
      }
    } else {
      for (const s of f.series) {
        const p = pairs(f.labelNames, s.labels);
        lines.push(`${f.name}${p === '' ? '' : `{${p}}`} ${formatValue(numberOf(s.value))}`);
      }
    }
    blocks.push(lines.join('\n'));
  }
  return `${blocks.join('\n\n')}\n`;
}
