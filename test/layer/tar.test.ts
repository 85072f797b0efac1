import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { sha256Digest } from '../../src/core/digest.js';
import type { StorePath } from '../../src/closure/store-path.js';
import { encodeHeader, END_OF_ARCHIVE, entrySize } from '../../src/layer/tar-header.js';
import { tarSize, tarStream } from '../../src/layer/tar-stream.js';
import { collectEntries } from '../../src/layer/tree.js';
import type { PlannedLayer } from '../../src/layer/plan.js';

/**
 * A fixed tree made by this test (not by Nix, so that its bytes are the same on every machine):
 * a fake store dir `<tmp>/nix/store` holding one "store path" with a file, an executable, a
 * symlink, an empty dir, a long name and a non-ASCII name. Modes are set explicitly, so the umask
 * of the machine running the test does not matter.
 */
function fixtureTree(): { storeDir: string; layer: PlannedLayer } {
  // A fixed location, so that entry names (and so the golden digest) are the same everywhere.
  const root = '/tmp/nixoci-golden-tree';
  if (existsSync(root)) {
    execFileSync('chmod', ['-R', 'u+w', root]);
    rmSync(root, { recursive: true });
  }
  const storeDir = join(root, 'nix', 'store');
  const sp = join(storeDir, '0123456789abcdfghijklmnpqrsvwxyz-fixture');
  mkdirSync(join(sp, 'bin'), { recursive: true });
  mkdirSync(join(sp, 'share', 'empty'), { recursive: true });
  writeFileSync(join(sp, 'bin', 'app'), '#!/bin/sh\necho hi\n');
  chmodSync(join(sp, 'bin', 'app'), 0o555);
  writeFileSync(join(sp, 'share', 'data.txt'), 'x'.repeat(1000));
  chmodSync(join(sp, 'share', 'data.txt'), 0o444);
  const long = 'l'.repeat(120);
  writeFileSync(join(sp, 'share', long), 'long name\n');
  chmodSync(join(sp, 'share', long), 0o444);
  writeFileSync(join(sp, 'share', 'grüße.txt'), 'utf-8 name\n');
  chmodSync(join(sp, 'share', 'grüße.txt'), 0o444);
  symlinkSync('../bin/app', join(sp, 'share', 'link'));
  symlinkSync('/etc/' + 'd'.repeat(150), join(sp, 'share', 'longlink'));
  for (const d of ['share/empty', 'share', 'bin', '']) chmodSync(join(sp, d), 0o555);
  return {
    storeDir,
    layer: { storePaths: [sp as StorePath], narHashes: ['sha256-x'], narSize: 0 },
  };
}

/** Names as they appear in the tar, relative to the fake root. */
function names(storeDir: string, layer: PlannedLayer): string[] {
  const prefix = storeDir.slice(1, -'nix/store'.length);
  return collectEntries(layer, { storeDir })
    .map((e) => e.name.toString('utf8'))
    .filter((n) => n.startsWith(prefix))
    .map((n) => n.slice(prefix.length));
}

describe('tar writer', () => {
  it('encodes a ustar header byte for byte', () => {
    const h = encodeHeader({ name: Buffer.from('nix/store/x'), type: 'file', mode: 0o444, size: 5 });
    expect(h.length).toBe(512);
    expect(h.subarray(0, 11).toString()).toBe('nix/store/x');
    expect(h.subarray(100, 108).toString('latin1')).toBe('0000444\0');
    expect(h.subarray(108, 124).toString('latin1')).toBe('0000000\u00000000000\0');
    expect(h.subarray(124, 136).toString('latin1')).toBe('00000000005\0');
    expect(h.subarray(136, 148).toString('latin1')).toBe('00000000001\0');
    expect(h.subarray(156, 157).toString()).toBe('0');
    expect(h.subarray(257, 265).toString('latin1')).toBe('ustar\u000000');
    expect(h.subarray(265, 269).toString()).toBe('root');
    expect(h.subarray(297, 301).toString()).toBe('root');
    // golden: any change to the header encoding changes every layer digest (see CHANGELOG.md)
    expect(sha256Digest(h)).toBe('sha256:2352d68687e3b6ed663fe83040bbd9d05066bcf56b8df65cb3b5ffd023822cd2');
  });

  it('uses PAX for long names, long link targets and sizes over 8 GiB', () => {
    const longName = Buffer.from('nix/store/' + 'a'.repeat(300));
    const h = encodeHeader({ name: longName, type: 'file', mode: 0o444, size: 9 * 2 ** 30 });
    expect(h.subarray(156, 157).toString()).toBe('x');
    const pax = h.subarray(512, 1024).toString('latin1');
    expect(pax).toContain(` path=${longName.toString()}\n`);
    expect(pax).toContain(` size=${9 * 2 ** 30}\n`);
    // every record's length prefix counts the record itself
    for (const rec of pax.replace(/\0+$/, '').split(/(?<=\n)/)) {
      expect(Number(rec.split(' ')[0])).toBe(Buffer.byteLength(rec));
    }
    expect(entrySize({ name: longName, type: 'file', mode: 0o444, size: 9 * 2 ** 30 })).toBe(
      h.length + 9 * 2 ** 30,
    );
    const link = encodeHeader({
      name: Buffer.from('l'),
      type: 'symlink',
      mode: 0o777,
      size: 0,
      linkTarget: Buffer.from('/' + 't'.repeat(200)),
    });
    expect(link.subarray(512, 1024).toString('latin1')).toContain('linkpath=/ttt');
  });

  it("keeps an owner over ustar's 7 octal digits in PAX uid/gid records, as GNU tar reads them", () => {
    const home = { name: Buffer.from('home/app'), type: 'dir', mode: 0o755, size: 0 } as const;
    const big = encodeHeader({ ...home, uid: 20000000, gid: 3000000 });
    const pax = big.subarray(512, 1024).toString('latin1');
    expect(pax).toContain(' uid=20000000\n');
    expect(pax).toContain(' gid=3000000\n');
    // The largest owner ustar holds stays in the ustar header, with no PAX header.
    expect(encodeHeader({ ...home, uid: 0o7777777, gid: 0o7777777 }).length).toBe(512);
    const dir = mkdtempSync(join(tmpdir(), 'nixoci-owner-'));
    const file = join(dir, 'owner.tar');
    writeFileSync(
      file,
      Buffer.concat([big, encodeHeader({ ...home, uid: 1000, gid: 1000 }), END_OF_ARCHIVE]),
    );
    const listed = execFileSync('tar', ['-tvf', file, '--numeric-owner'], { encoding: 'utf8' });
    const [first, second] = listed.split('\n');
    expect(first).toMatch(/^drwxr-xr-x 20000000\/3000000 .* home\/app\/$/);
    expect(second).toMatch(/^drwxr-xr-x 1000\/1000 .* home\/app\/$/);
    rmSync(dir, { recursive: true });
  });

  it('writes names that are not UTF-8 raw in ustar, or in PAX after hdrcharset=BINARY', () => {
    const bad = Buffer.concat([Buffer.from('nix/store/x/bad'), Buffer.from([0xff, 0xfe])]);
    const raw = encodeHeader({ name: bad, type: 'file', mode: 0o444, size: 0 });
    expect(raw.length).toBe(512);
    expect(raw.subarray(0, bad.length).equals(bad)).toBe(true);
    const longBad = Buffer.concat([Buffer.from('nix/store/' + 'b'.repeat(150)), Buffer.from([0xff])]);
    const pax = encodeHeader({ name: longBad, type: 'file', mode: 0o444, size: 0 }).subarray(512, 1024);
    expect(pax.toString('latin1')).toMatch(/^21 hdrcharset=BINARY\n\d+ path=/);
    expect(pax.includes(Buffer.concat([Buffer.from(' path='), longBad, Buffer.from('\n')]))).toBe(true);
    const link = encodeHeader({
      name: Buffer.from('l'),
      type: 'symlink',
      mode: 0o777,
      size: 0,
      linkTarget: Buffer.concat([Buffer.from('/' + 't'.repeat(200)), Buffer.from([0xc3, 0x28])]),
    });
    expect(link.subarray(512, 1024).toString('latin1')).toMatch(/^21 hdrcharset=BINARY\n\d+ linkpath=/);
    // UTF-8 names are PAX records in UTF-8, as before (the golden digest below holds one)
    const utf8 = encodeHeader({ name: Buffer.from('nix/store/x/grüße'), type: 'file', mode: 0o444, size: 0 });
    expect(utf8.subarray(512, 1024).toString('utf8')).toMatch(/^\d+ path=nix\/store\/x\/grüße\n/);
  });

  it('splits names of 101–256 bytes into ustar prefix and name', () => {
    const name = Buffer.from('nix/store/' + 'p'.repeat(90) + '/' + 'n'.repeat(90));
    const h = encodeHeader({ name, type: 'file', mode: 0o444, size: 0 });
    expect(h.length).toBe(512);
    expect(h.subarray(345, 345 + 100).toString()).toBe('nix/store/' + 'p'.repeat(90));
  });

  it('lists entries sorted bytewise, parents first, with store modes and symlinks kept', () => {
    const { storeDir, layer } = fixtureTree();
    const n = names(storeDir, layer);
    expect(n).toEqual([...n].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    expect(n.slice(0, 2)).toEqual(['nix', 'nix/store']);
    const entries = collectEntries(layer, { storeDir });
    const byName = new Map(entries.map((e) => [e.name.toString().split('-fixture')[1] ?? '', e]));
    expect(byName.get('/bin/app')?.mode).toBe(0o555);
    expect(byName.get('/share/data.txt')?.mode).toBe(0o444);
    expect(byName.get('/share/link')).toMatchObject({ type: 'symlink', mode: 0o777 });
    expect(byName.get('/share/link')?.linkTarget?.toString()).toBe('../bin/app');
    expect(byName.get('/share/empty')).toMatchObject({ type: 'dir', mode: 0o555 });
  });

  it('produces exactly tarSize bytes, and the same bytes every time', async () => {
    const { storeDir, layer } = fixtureTree();
    const entries = collectEntries(layer, { storeDir });
    const stats = { bytesRead: 0 };
    const a = await buffer(tarStream(entries, stats));
    const b = await buffer(tarStream(entries, stats));
    expect(a.length).toBe(tarSize(entries));
    expect(a.equals(b)).toBe(true);
    // golden digest of the whole fixture layer: a change here is a breaking change (CHANGELOG.md)
    expect(sha256Digest(a)).toBe('sha256:e8bec6eca95745d9a8261bcf72948f3f6bd298362f32232fd372df3b2a107ee3');
    expect(stats.bytesRead).toBe(2 * (18 + 1000 + 10 + 11));
  });

  it('holds each store file as its entry alone, read from / + its name (100k-file layers stay small)', async () => {
    const { storeDir, layer } = fixtureTree();
    const entries = collectEntries(layer, { storeDir });
    const files = entries.filter((e) => e.type === 'file');
    expect(files).toHaveLength(4);
    // no second Buffer with the file's absolute path, nor any other field, beside the tar fields
    for (const e of files) expect(Object.keys(e).sort()).toEqual(['mode', 'name', 'size', 'type']);
    const stats = { bytesRead: 0 };
    const tar = await buffer(tarStream(entries, stats));
    expect(tar.includes(Buffer.from('x'.repeat(1000)))).toBe(true);
    expect(stats.bytesRead).toBe(18 + 1000 + 10 + 11);
  });

  it('clears setuid/setgid bits unless asked to keep them', () => {
    const { storeDir, layer } = fixtureTree();
    const app = join(layer.storePaths[0]!, 'bin', 'app');
    chmodSync(app, 0o4555);
    const mode = (keep: boolean): number | undefined =>
      collectEntries(layer, { storeDir, keepSetuid: keep }).find((e) => e.name.toString().endsWith('bin/app'))
        ?.mode;
    expect(mode(false)).toBe(0o555);
    expect(mode(true)).toBe(0o4555);
  });
});
