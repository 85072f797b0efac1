// Store path facts the bench checks against: regular-file bytes (what `bytesRead` counts),
// file counts, and the closure graph written by nix/closure-graph.nix.
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Regular files under p (symlinks not followed): {files, bytes}. */
export function fileBytes(p) {
  let files = 0;
  let bytes = 0;
  const walk = (q) => {
    const st = lstatSync(q);
    if (st.isDirectory()) for (const e of readdirSync(q)) walk(join(q, e));
    else if (st.isFile()) {
      files++;
      bytes += st.size;
    }
  };
  walk(p);
  return { files, bytes };
}

/** {roots, closure: [{path, narSize, references}]} from a closure-graph.nix output. */
export function readGraph(file) {
  return JSON.parse(readFileSync(file, 'utf8'));
}
