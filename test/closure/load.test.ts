import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadGraphFile, parseGraph } from '../../src/closure/load.js';
import { normaliseNarHash } from '../../src/closure/nar-hash.js';
import { NixociError } from '../../src/core/errors.js';
import { repoRoot } from '../helpers/env.js';
import { buildFixtureClosure, nixBuild, pathInfoJson, type FixtureClosure } from '../helpers/nix.js';

const dir = mkdtempSync(join(tmpdir(), 'nixoci-graph-'));
let n = 0;
function file(content: string | object): string {
  const f = join(dir, `g${n++}.json`);
  writeFileSync(f, typeof content === 'string' ? content : JSON.stringify(content));
  return f;
}

async function failure(p: Promise<unknown>): Promise<NixociError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(NixociError);
    return e as NixociError;
  }
  throw new Error('expected a failure');
}

let fx: FixtureClosure;
let entries: { path: string; narHash: string; narSize: number; references: string[] }[];

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'graph-test' });
  entries = (JSON.parse(readFileSync(fx.graphFile, 'utf8')) as { closure: typeof entries }).closure;
});

describe('closure graph input', () => {
  it('reads the nix/closure-graph.nix output (exportReferencesGraph, structured attrs)', async () => {
    const c = await loadGraphFile(fx.graphFile);
    expect([...c.paths.keys()].sort()).toEqual(fx.paths);
    expect(c.roots).toEqual([fx.app]);
    for (const info of c.paths.values()) {
      expect(info.narHash).toMatch(/^sha256-[A-Za-z0-9+/]{43}=$/);
      expect(info.references).not.toContain(info.path);
    }
  });

  it("reads a derivation's whole .attrs.json, whose empty list attributes sort before the graph", async () => {
    const [attrsJson] = await nixBuild([
      join(repoRoot, 'test/fixtures/structured-attrs.nix'),
      '--argstr',
      'tag',
      'graph-test',
    ]);
    expect(readFileSync(attrsJson!, 'utf8')).toMatch(/^\{"buildInputs":\[\],/);
    const c = await loadGraphFile(attrsJson!);
    expect([...c.paths.keys()].sort()).toEqual(fx.paths);
    expect(c.roots).toEqual([fx.app]);
  });

  it('refuses a structured-attrs file with several graphs rather than picking one', async () => {
    const other = entries.filter((e) => e.path.endsWith('-busybox'));
    const e = await failure(loadGraphFile(file({ app: entries, tools: other })));
    expect(e.code).toBe('GRAPH_SHAPE');
    expect(e.message).toMatch(/several closure graphs \(app, tools\)/);
  });

  it('reads `nix path-info --json --recursive` in the array form and the object form', async () => {
    const arr = (await pathInfoJson([fx.app])) as { path: string }[];
    expect(Array.isArray(arr)).toBe(true);
    const a = await loadGraphFile(file(arr));
    const obj = Object.fromEntries(arr.map(({ path, ...rest }) => [path, rest]));
    const o = await loadGraphFile(file(obj));
    const fromGraph = await loadGraphFile(fx.graphFile);
    for (const c of [a, o]) {
      expect([...c.paths.keys()].sort()).toEqual(fx.paths);
      expect(c.roots).toEqual([fx.app]);
      for (const [p, info] of c.paths) expect(info).toEqual(fromGraph.paths.get(p));
    }
  });

  it("reads Nix 2.33's path-info JSON: version 1 with version/storeDir beside the paths, and version 2", async () => {
    // This machine's Nix predates 2.33: its output is rewritten into the documented 2.33 shapes.
    const arr = (await pathInfoJson([fx.app])) as {
      path: string;
      narHash: string;
      narSize: number;
      references: string[];
    }[];
    const fromGraph = await loadGraphFile(fx.graphFile);
    const v1 = {
      version: 1,
      storeDir: '/nix/store',
      ...Object.fromEntries(arr.map(({ path, ...rest }) => [path, rest])),
    };
    const base = (p: string): string => p.slice('/nix/store/'.length);
    const v2 = (hash: (h: string) => unknown): object => ({
      version: 2,
      storeDir: '/nix/store',
      info: Object.fromEntries(
        arr.map(({ path, narHash, narSize, references }) => [
          base(path),
          { narHash: hash(normaliseNarHash(narHash)!), narSize, references: references.map(base), ca: null },
        ]),
      ),
    });
    const sri = v2((h) => h);
    const structured = v2((h) => ({
      algorithm: 'sha256',
      format: 'base64',
      hash: h.slice('sha256-'.length),
    }));
    const hex = v2((h) => ({
      algorithm: 'sha256',
      format: 'base16',
      hash: Buffer.from(h.slice('sha256-'.length), 'base64').toString('hex'),
    }));
    for (const json of [v1, sri, structured, hex]) {
      const c = await loadGraphFile(file(json));
      expect([...c.paths.keys()].sort()).toEqual(fx.paths);
      expect(c.roots).toEqual([fx.app]);
      for (const [p, info] of c.paths) expect(info).toEqual(fromGraph.paths.get(p));
    }
    const invalid = { version: 2, storeDir: '/nix/store', info: { [base(fx.app)]: null } };
    expect((await failure(loadGraphFile(file(invalid)))).message).toMatch(/is not valid in the Nix store/);
  });

  it('asks a Nix that refuses --json without --json-format for version 2', async () => {
    // A nix in front of the real one that behaves as Nix 2.33 announces for later releases: plain
    // --json refused, --json-format 2 answered in the version-2 shape.
    const real = execFileSync('sh', ['-c', 'command -v nix'], { encoding: 'utf8' }).trim();
    const wrapper = join(dir, 'nix');
    writeFileSync(
      wrapper,
      `#!/bin/sh
case " $* " in
  *" --json-format 2 "*) ;;
  *" path-info "*) echo "error: '--json' needs '--json-format' (1 or 2)" >&2; exit 1 ;;
  *) exec ${real} "$@" ;;
esac
args=""; skip=0
for a in "$@"; do
  if [ "$skip" = 1 ]; then skip=0; continue; fi
  if [ "$a" = "--json-format" ]; then skip=1; continue; fi
  args="$args '$a'"
done
eval exec ${real} "$args" | ${process.execPath} -e '
let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
  const a = JSON.parse(s), b = (p) => p.replace("/nix/store/", "");
  const info = {};
  for (const e of a) info[b(e.path)] = { narHash: e.narHash, narSize: e.narSize, references: e.references.map(b) };
  process.stdout.write(JSON.stringify({ version: 2, storeDir: "/nix/store", info }));
});'
`,
      { mode: 0o755 },
    );
    const logged: string[] = [];
    const old = process.env.NIXOCI_NIX;
    process.env.NIXOCI_NIX = wrapper;
    try {
      const c = await loadGraphFile(file([fx.app]), { log: (l) => logged.push(l) });
      expect([...c.paths.keys()].sort()).toEqual(fx.paths);
    } finally {
      if (old === undefined) delete process.env.NIXOCI_NIX;
      else process.env.NIXOCI_NIX = old;
    }
    expect(logged.filter((l) => l.includes('path-info'))).toHaveLength(2);
    expect(logged.at(-1)).toContain('--json-format 2');
  });

  it('reads a plain list of store paths, asking nix path-info for the graph', async () => {
    const logged: string[] = [];
    const c = await loadGraphFile(file([fx.app]), { log: (l) => logged.push(l) });
    expect([...c.paths.keys()].sort()).toEqual(fx.paths);
    expect(logged.join('\n')).toContain('path-info');
  });

  it('normalises SRI, nix32 and hex narHashes to the same SRI value', () => {
    const sri = 'sha256-' + Buffer.alloc(32, 7).toString('base64');
    const hex = 'sha256:' + Buffer.alloc(32, 7).toString('hex');
    expect(normaliseNarHash(sri)).toBe(sri);
    expect(normaliseNarHash(hex)).toBe(sri);
    const nix32 = entries[0]!.narHash;
    expect(nix32).toMatch(/^sha256:[0-9a-z]{52}$/);
    expect(normaliseNarHash(nix32)).toMatch(/^sha256-/);
    expect(normaliseNarHash('md5:abc')).toBeNull();
  });

  const bad: [string, () => string | object, string, RegExp][] = [
    ['invalid JSON', () => '{"closure": [', 'GRAPH_JSON', /not valid JSON/],
    [
      'nesting no graph has (refused before parsing)',
      () => '['.repeat(65) + ']'.repeat(65),
      'GRAPH_JSON',
      /nested deeper than 64 levels: not a closure graph/,
    ],
    [
      // brackets inside strings are not nesting: this one fails on its shape, not on its depth
      'brackets in a string',
      () => ({ closure: [{ path: '['.repeat(100) }] }),
      'GRAPH_SHAPE',
      /not a closure graph at closure\.0/,
    ],
    [
      'wrong shape',
      () => ({ closure: [{ path: 1 }] }),
      'GRAPH_SHAPE',
      /not a closure graph at closure\.0\.path/,
    ],
    ['a number', () => '42', 'GRAPH_SHAPE', /not a closure graph/],
    ['empty graph', () => ({ closure: [] }), 'GRAPH_EMPTY', /no store paths/],
    [
      'dangling reference',
      () => ({ closure: entries.filter((e) => !e.path.endsWith('-busybox')) }),
      'GRAPH_DANGLING',
      /references \/nix\/store\/\w+-busybox, which is not in the graph/,
    ],
    ['duplicate path', () => ({ closure: [...entries, entries[0]!] }), 'GRAPH_DUPLICATE', /listed twice/],
    [
      'path outside the store dir',
      () => ({ closure: [{ ...entries[0]!, path: '/usr/bin/env', references: [] }] }),
      'STORE_PATH_INVALID',
      /outside the store dir/,
    ],
    [
      '".." in a path',
      () => ({ closure: [{ ...entries[0]!, path: '/nix/store/../etc/passwd', references: [] }] }),
      'STORE_PATH_INVALID',
      /"\." or "\.\." component/,
    ],
    [
      'relative path',
      () => ({ closure: [{ ...entries[0]!, path: 'nix/store/abc', references: [] }] }),
      'STORE_PATH_INVALID',
      /relative path/,
    ],
    [
      'store path that does not exist',
      () => ({
        closure: [
          { ...entries[0]!, path: '/nix/store/00000000000000000000000000000000-gone', references: [] },
        ],
      }),
      'STORE_PATH_MISSING',
      /does not exist on disk/,
    ],
    [
      'bad narHash',
      () => ({ closure: [{ ...entries[0]!, narHash: 'md5:xyz', references: [] }] }),
      'GRAPH_SHAPE',
      /narHash "md5:xyz" is not a sha256 hash/,
    ],
    [
      'a narHash of the wrong type (path-info v2)',
      () => ({
        version: 2,
        storeDir: '/nix/store',
        info: { [basename(entries[0]!.path)]: { narHash: 3, narSize: 1, references: [] } },
      }),
      'GRAPH_SHAPE',
      /: not a closure graph at info\..+\.narHash: expected a hash string, or an object with algorithm, format, hash$/,
    ],
    [
      'negative narSize',
      () => ({ closure: [{ ...entries[0]!, narSize: -1 }] }),
      'GRAPH_SHAPE',
      /closure\.0\.narSize/,
    ],
  ];
  for (const [name, content, code, message] of bad) {
    it(`rejects ${name} with ${code}, naming the file`, async () => {
      const f = file(content());
      const e = await failure(loadGraphFile(f));
      expect(e.code).toBe(code);
      expect(e.message).toMatch(message);
      expect(e.message).toContain(f);
      expect(e.hint).toBeTruthy();
    });
  }

  it('rejects a missing file with GRAPH_READ', async () => {
    const e = await failure(loadGraphFile(join(dir, 'nope.json')));
    expect(e.code).toBe('GRAPH_READ');
    expect(e.message).toMatch(/ENOENT/);
  });

  it('rejects a root that is not in the graph', async () => {
    const e = await failure(
      parseGraph({ roots: ['/nix/store/00000000000000000000000000000000-x'], closure: entries }, 'g'),
    );
    expect(e.code).toBe('GRAPH_DANGLING');
  });
});
