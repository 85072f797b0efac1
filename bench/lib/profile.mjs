// Summarise a V8 .cpuprofile (node --cpu-prof): self time per function, the top hotspots.
import { readFileSync } from 'node:fs';

export function summariseProfile(file, top = 15) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let total = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    const dt = prof.timeDeltas[i] ?? 0;
    total += dt;
    const n = byId.get(prof.samples[i]);
    const cf = n.callFrame;
    const where = cf.url
      ? `${cf.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}`
      : '';
    const key = `${cf.functionName || '(anonymous)'} ${where}`.trim();
    self.set(key, (self.get(key) ?? 0) + dt);
  }
  const rows = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([fn, us]) => ({ fn, ms: us / 1000, pct: (100 * us) / total }));
  return { totalMs: total / 1000, rows };
}
