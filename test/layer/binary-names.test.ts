// File names and symlink targets that are not UTF-8, which Nix stores as any other bytes: a store
// path holding them (added by the real Nix, `nix-store --add`) gives a layer that bsdtar
// (libarchive, which refuses a PAX name that is not UTF-8 unless the header says hdrcharset=BINARY),
// GNU tar and a Docker engine all read with the exact bytes.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nixoci } from '../helpers/cli.js';
import { docker, dockerRmi } from '../helpers/docker.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure } from '../helpers/nix.js';

const work = mkdtempSync(join(tmpdir(), 'nixoci-binary-names-'));
const image = `hx-tar-binary-names:${randomBytes(4).toString('hex')}`;
const b = (...parts: (string | number[])[]): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));

// Short enough for ustar's name field (raw bytes there), and too long for it (a PAX record).
const shortName = b('bad', [0xff, 0xfe], '.bin');
const longName = b(`long-${'n'.repeat(150)}-`, [0xff]);
const linkName = b('link-', [0xc3, 0x28]);
const longTarget = b(`/${'t'.repeat(120)}/`, [0xc3, 0x28]);
const shortLink = b('short-link');
// Valid UTF-8 stays in a PAX path record as before (the golden digests hold one such name).
const utf8Name = b('grüße.txt');

/** name (latin1, so that every byte is one char) → file content, or `-> target` for a symlink */
function tree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const n of readdirSync(dir, { encoding: 'buffer' })) {
    const p = Buffer.concat([Buffer.from(dir + '/'), n]);
    let v: string;
    try {
      v = `-> ${readlinkSync(p, { encoding: 'buffer' }).toString('latin1')}`;
    } catch {
      v = readFileSync(p, 'latin1');
    }
    out.set(n.toString('latin1'), v);
  }
  return out;
}

let storePath = '';
let busybox = '';
let layerTar = '';
let expected: Map<string, string>;

beforeAll(async () => {
  // A fixed directory name, so that the store path is the same on every run (content-addressed).
  const src = join(work, 'binary-names');
  mkdirSync(src);
  const under = (n: Buffer): Buffer => Buffer.concat([Buffer.from(src + '/'), n]);
  writeFileSync(under(shortName), 'short\n');
  writeFileSync(under(longName), 'long\n');
  writeFileSync(under(utf8Name), 'utf-8\n');
  symlinkSync(longTarget, under(linkName));
  symlinkSync(shortName, under(shortLink));
  expected = tree(src);
  storePath = execFileSync('nix-store', ['--add', src], { encoding: 'utf8' }).trim();
  const fx = await buildFixtureClosure({ tag: 'binary-names' });
  busybox = fx.paths.find((p) => p.endsWith('-busybox'))!;

  const out = join(work, 'oci');
  const r = await nixoci([
    ...['build', '--path', storePath, '--path', busybox, '--compression', 'none', '--no-cache'],
    ...['--to', `oci:${out}:t`, '--to', `docker-daemon:${image}`, '-H', testEnv().dockerHost],
  ]);
  expect(r.code, r.stderr).toBe(0);
  const blob = (d: string): Buffer => readFileSync(join(out, 'blobs', 'sha256', d.slice('sha256:'.length)));
  const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const manifest = JSON.parse(blob(index.manifests[0]!.digest).toString()) as {
    layers: { digest: string }[];
  };
  const layer = manifest.layers.map((l) => blob(l.digest)).find((t) => t.includes(basename(storePath)));
  layerTar = join(work, 'layer.tar');
  writeFileSync(layerTar, layer!);
}, 300_000);

afterAll(async () => {
  await dockerRmi(image);
  rmSync(work, { recursive: true, force: true });
});

/** Runs a tar program on the layer in a UTF-8 locale; its output as latin1 (one char per byte). */
function tar(cmd: string, args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { env: { ...process.env, LC_ALL: 'C.UTF-8' }, encoding: 'latin1' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const rel = (): string => storePath.slice(1);

describe('names that are not UTF-8', () => {
  it('bsdtar lists and extracts them with the exact bytes, without an error', () => {
    const listed = tar('bsdtar', ['-tvf', layerTar]);
    expect(listed.stderr).toBe('');
    expect(listed.code).toBe(0);
    // bsdtar shows a byte it cannot print as \ooo
    expect(listed.stdout).toContain(`${rel()}/bad\\377\\376.bin\n`);
    expect(listed.stdout).toContain(`${rel()}/long-${'n'.repeat(150)}-\\377\n`);
    expect(listed.stdout).toContain(`${rel()}/link-\\303( -> /${'t'.repeat(120)}/\\303(\n`);
    expect(listed.stdout).toContain(`${rel()}/short-link -> bad\\377\\376.bin\n`);
    expect(listed.stdout).toContain(`${rel()}/${Buffer.from('grüße.txt').toString('latin1')}\n`);
    const x = join(work, 'bsdtar-x');
    mkdirSync(x);
    const extracted = tar('bsdtar', ['-xf', layerTar, '-C', x]);
    expect(extracted.stderr).toBe('');
    expect(extracted.code).toBe(0);
    expect(tree(join(x, storePath))).toEqual(expected);
  });

  it('GNU tar lists and extracts them with the exact bytes', () => {
    const listed = tar('tar', ['-tvf', layerTar, '--quoting-style=literal']);
    expect(listed.code, listed.stderr).toBe(0);
    const raw = (n: Buffer): string => n.toString('latin1');
    expect(listed.stdout).toContain(`${rel()}/${raw(shortName)}\n`);
    expect(listed.stdout).toContain(`${rel()}/${raw(longName)}\n`);
    expect(listed.stdout).toContain(`${rel()}/${raw(linkName)} -> ${raw(longTarget)}\n`);
    expect(listed.stdout).toContain(`${rel()}/${raw(shortLink)} -> ${raw(shortName)}\n`);
    const x = join(work, 'gnutar-x');
    mkdirSync(x);
    expect(tar('tar', ['-xf', layerTar, '-C', x]).code).toBe(0);
    expect(tree(join(x, storePath))).toEqual(expected);
  });

  it('a container sees the files under their exact names', async () => {
    // busybox ls prints `?` for such bytes: the shell's glob gives the names, od their bytes, and
    // cat reads each file by the name written with printf escapes.
    const sh = `${busybox}/bin/sh`;
    const script = [
      `export PATH=${busybox}/bin; cd ${storePath}`,
      `for f in *; do printf '%s' "$f" | od -An -v -tx1 | tr -d ' \\n'; echo; done`,
      `cat "$(printf 'bad\\377\\376.bin')" short-link "long-${'n'.repeat(150)}-$(printf '\\377')"`,
    ].join('; ');
    const r = await docker(['run', '--rm', '--network', 'none', image, sh, '-c', script]);
    const lines = r.stdout.split('\n');
    const names = lines.slice(0, expected.size).map((h) => Buffer.from(h, 'hex').toString('latin1'));
    expect(names.sort()).toEqual([...expected.keys()].sort());
    expect(r.stdout).toContain('short\nshort\nlong\n');
  });
});
