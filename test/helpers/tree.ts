// Compares a directory tree (an unpacked image rootfs) with store paths, byte for byte.
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  content?: string; // sha-free: files are small; base64 of the content
  target?: string;
}

/** Every entry under `root` (relative names), with modes without setuid bits and file contents. */
export function readTree(root: string): Map<string, TreeEntry> {
  const out = new Map<string, TreeEntry>();
  const walk = (rel: string): void => {
    const abs = rel ? join(root, rel) : root;
    const st = lstatSync(abs);
    const mode = st.mode & 0o777;
    if (st.isSymbolicLink()) out.set(rel, { type: 'symlink', mode: 0o777, target: readlinkSync(abs) });
    else if (st.isFile()) out.set(rel, { type: 'file', mode, content: readFileSync(abs).toString('base64') });
    else if (st.isDirectory()) {
      out.set(rel, { type: 'dir', mode });
      for (const c of readdirSync(abs).sort()) walk(rel ? `${rel}/${c}` : c);
    } else throw new Error(`unexpected file type at ${abs}`);
  };
  walk('');
  return out;
}
