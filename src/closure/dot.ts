import type { Closure } from './closure.js';
import { compareBytes, storePathHash, storePathName } from './store-path.js';

/**
 * The closure graph in Graphviz dot: one node per store path (name, short hash, NAR size), an edge
 * from each path to what it references, roots drawn bold. Bytewise order, so the text is stable.
 */
export function closureToDot(closure: Closure): string {
  const roots = new Set(closure.roots);
  const paths = [...closure.paths.values()].sort((a, b) => compareBytes(a.path, b.path));
  const id = (p: string): string => JSON.stringify(p);
  const lines = ['digraph closure {', '  rankdir=LR;', '  node [shape=box, fontname="monospace"];'];
  for (const info of paths) {
    const label = `${storePathName(info.path)}\\n${storePathHash(info.path).slice(0, 8)} · ${mib(info.narSize)}`;
    const style = roots.has(info.path) ? ', style=bold' : '';
    lines.push(`  ${id(info.path)} [label="${label.replace(/"/g, '\\"')}"${style}];`);
  }
  for (const info of paths) {
    for (const r of info.references) lines.push(`  ${id(info.path)} -> ${id(r)};`);
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

function mib(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}
