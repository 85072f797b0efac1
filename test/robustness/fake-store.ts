// A fake Nix store in a temp dir (nixoci honours NIX_STORE_DIR): paths with contents Nix would
// never produce (FIFOs, sockets, devices, names with newlines or invalid UTF-8, 9 GiB sparse
// files), and the graph JSON that names them.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const NIX32 = '0123456789abcdfghijklmnpqrsvwxyz';

export interface FakePath {
  readonly path: string;
  readonly references: string[];
}

export class FakeStore {
  readonly dir: string;
  readonly paths: FakePath[] = [];

  constructor(root: string) {
    this.dir = path.join(root, 'store');
    mkdirSync(this.dir, { recursive: true });
  }

  /** A new store path (a directory) filled by `fill`, with a random hash part. */
  add(name: string, fill: (dir: string) => void, references: string[] = []): string {
    const hash = [...randomBytes(32)].map((b) => NIX32[b % 32]).join('');
    const p = path.join(this.dir, `${hash}-${name}`);
    mkdirSync(p);
    fill(p);
    this.paths.push({ path: p, references });
    return p;
  }

  /** exportReferencesGraph-style JSON for every path added. */
  graph(file: string): string {
    const narHash = `sha256-${Buffer.alloc(32, 1).toString('base64')}`;
    const entries = this.paths.map((p) => ({ path: p.path, narHash, narSize: 0, references: p.references }));
    writeFileSync(file, JSON.stringify(entries));
    return file;
  }

  get env(): NodeJS.ProcessEnv {
    return { NIX_STORE_DIR: this.dir };
  }
}

/** A unix socket file at `file` (made by python3, which binds and leaves it behind). */
export function makeSocket(file: string): void {
  execFileSync('python3', [
    '-c',
    'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])',
    file,
  ]);
}
