// Summarises a V8 .cpuprofile (from `node --cpu-prof`): the functions with the most self time,
// self time per file, and the functions with the most inclusive time, as shares of the busy
// (non-idle) time, so a bench can say where a proxy spends its CPU.
// CLI: node bench/lib/cpuprofile-top.mjs FILE.cpuprofile [N]
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

/** { busyMs, functions, files, inclusive: [{ name, where, ms, share }] } for a profile file (shares of busy time). */
export function summariseCpuProfile(file, top = 25) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = p.timeDeltas;
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (dt[i] ?? 0));
  // Inclusive time: a node's self time counts for every distinct function on its stack.
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const key = (cf) => {
    const url = cf.url.replace(/^file:\/\//, '').replace(/^.*\/(node_modules\/|dist\/)/, '$1');
    return { name: (cf.functionName || '(anonymous)').slice(0, 80), url, where: url ? `${url}:${cf.lineNumber + 1}` : '' };
  };
  const incl = new Map();
  for (const [id, us] of self) {
    if (byId.get(id).callFrame.functionName === '(idle)') continue;
    const seen = new Set();
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const k = key(byId.get(at).callFrame);
      const kk = `${k.name} ${k.where}`;
      if (seen.has(kk)) continue;
      seen.add(kk);
      const f = incl.get(kk) ?? { name: k.name, where: k.where, us: 0 };
      f.us += us;
      incl.set(kk, f);
    }
  }
  const fns = new Map();
  const files = new Map();
  let total = 0;
  for (const [id, us] of self) {
    const { name, url, where } = key(byId.get(id).callFrame);
    if (name === '(idle)') continue;
    const k = `${name} ${where}`;
    const f = fns.get(k) ?? { name, where, us: 0 };
    f.us += us;
    fns.set(k, f);
    const fk = url || name;
    files.set(fk, (files.get(fk) ?? 0) + us);
    total += us;
  }
  const share = (us) => (total ? us / total : 0);
  return {
    busyMs: total / 1000,
    functions: [...fns.values()].sort((a, b) => b.us - a.us).slice(0, top).map((f) => ({ name: f.name, where: f.where, ms: f.us / 1000, share: share(f.us) })),
    inclusive: [...incl.values()].filter((f) => f.name !== '(root)').sort((a, b) => b.us - a.us).slice(0, top).map((f) => ({ name: f.name, where: f.where, ms: f.us / 1000, share: share(f.us) })),
    files: [...files.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([file, us]) => ({ file, ms: us / 1000, share: share(us) })),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [file, n] = process.argv.slice(2);
  if (!file) {
    console.error('usage: node bench/lib/cpuprofile-top.mjs FILE.cpuprofile [N]');
    process.exit(2);
  }
  const s = summariseCpuProfile(file, Number(n ?? 25));
  console.log(`busy (non-idle) time sampled: ${s.busyMs.toFixed(0)} ms\n\nself time by function:`);
  for (const f of s.functions) console.log(`${(f.share * 100).toFixed(1).padStart(5)}%  ${f.name}  ${f.where}`);
  console.log('\ninclusive time by function:');
  for (const f of s.inclusive) console.log(`${(f.share * 100).toFixed(1).padStart(5)}%  ${f.name}  ${f.where}`);
  console.log('\nself time by file:');
  for (const f of s.files) console.log(`${(f.share * 100).toFixed(1).padStart(5)}%  ${f.file}`);
}
