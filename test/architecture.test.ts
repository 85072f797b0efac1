import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/env.js';

// Dependencies point one way: core ← closure ← layer ← image ← registry ← cli.
const RANK: Record<string, number> = { core: 0, closure: 1, layer: 2, image: 3, registry: 4, cli: 5 };

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('architecture', () => {
  it('imports only point down the layer order, and nothing imports cli', () => {
    const src = join(repoRoot, 'src');
    const violations: string[] = [];
    for (const f of files(src)) {
      const from = relative(src, f).split('/')[0]!;
      const text = readFileSync(f, 'utf8');
      for (const m of text.matchAll(/(?:from|import\()\s*['"](\.[^'"]+)['"]/g)) {
        const target = relative(src, join(f, '..', m[1]!)).split('/')[0]!;
        if (!(target in RANK) || !(from in RANK)) continue;
        if (RANK[target]! > RANK[from]!) violations.push(`${relative(src, f)} imports ${m[1]}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('has one sha256 helper: no other module calls createHash', () => {
    const src = join(repoRoot, 'src');
    const users = files(src).filter((f) => readFileSync(f, 'utf8').includes('createHash('));
    expect(users.map((f) => relative(src, f))).toEqual(['core/digest.ts']);
  });

  it("makes directories with makeDirs, never with Node's recursive mkdir (it spins on /proc paths)", () => {
    const users = [...files(join(repoRoot, 'src')), join(repoRoot, 'bin', 'nixoci.js')].filter((f) =>
      /mkdir(Sync)?\([^)]*recursive/.test(readFileSync(f, 'utf8')),
    );
    expect(users.map((f) => relative(repoRoot, f))).toEqual([]);
  });
});
