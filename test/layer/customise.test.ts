import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Closure, PathInfo } from '../../src/closure/closure.js';
import type { StorePath } from '../../src/closure/store-path.js';
import { customisationLayer } from '../../src/layer/customise.js';
import type { ExtraEntry } from '../../src/layer/plan.js';
import { encodeHeader } from '../../src/layer/tar-header.js';
import { collectEntries } from '../../src/layer/tree.js';

/** Two "store paths" in a temp dir: `tool` (bin/tool, bin/env) and `certs` (a CA bundle, not a root). */
function fakeClosure(): Closure {
  const store = mkdtempSync(join(tmpdir(), 'nixoci-customise-'));
  const tool = join(store, '0123456789abcdfghijklmnpqrsvwxyz-tool') as StorePath;
  const certs = join(store, '1123456789abcdfghijklmnpqrsvwxyz-cacert') as StorePath;
  mkdirSync(join(tool, 'bin'), { recursive: true });
  writeFileSync(join(tool, 'bin', 'tool'), '#!/bin/sh\n', { mode: 0o755 });
  writeFileSync(join(tool, 'bin', 'env'), '#!/bin/sh\n', { mode: 0o755 });
  mkdirSync(join(certs, 'etc', 'ssl', 'certs'), { recursive: true });
  writeFileSync(join(certs, 'etc', 'ssl', 'certs', 'ca-bundle.crt'), 'PEM\n');
  const info = (path: StorePath, references: StorePath[]): PathInfo => ({
    path,
    narHash: 'sha256-x',
    narSize: 1,
    references,
  });
  return {
    storeDir: store,
    roots: [tool],
    paths: new Map([
      [tool, info(tool, [certs])],
      [certs, info(certs, [])],
    ]),
  };
}

const byPath = (entries: readonly ExtraEntry[], path: string): ExtraEntry | undefined =>
  entries.find((e) => e.path === path);

describe('customisation layer', () => {
  it('links the roots’ binaries, writes users, /tmp, the home and the CA bundle', () => {
    const closure = fakeClosure();
    const [tool] = closure.roots;
    const certs = [...closure.paths.keys()][1]!;
    const project = mkdtempSync(join(tmpdir(), 'nixoci-copy-'));
    writeFileSync(join(project, 'config.txt'), 'text\n');
    writeFileSync(join(project, 'blob.bin'), Buffer.from([0xff, 0x00, 0xfe]));
    const { entries, env, shell } = customisationLayer(closure, {
      user: { name: 'app', uid: 1000, gid: 1000, home: '/home/app' },
      workdir: '/app',
      copies: [
        { src: join(project, 'config.txt'), dest: '/app/config.txt' },
        { src: join(project, 'blob.bin'), dest: '/app/data/' },
      ],
    });
    expect(byPath(entries, 'bin/tool')).toEqual({
      kind: 'symlink',
      path: 'bin/tool',
      target: `${tool}/bin/tool`,
    });
    expect(byPath(entries, 'usr/bin/env')).toEqual({
      kind: 'symlink',
      path: 'usr/bin/env',
      target: `${tool}/bin/env`,
    });
    expect(byPath(entries, 'tmp')).toEqual({ kind: 'dir', path: 'tmp', mode: 0o1777 });
    expect(byPath(entries, 'app')).toEqual({ kind: 'dir', path: 'app', mode: 0o755, uid: 1000, gid: 1000 });
    expect(byPath(entries, 'home/app')).toMatchObject({ uid: 1000, gid: 1000 });
    expect(byPath(entries, 'etc/ssl/certs/ca-certificates.crt')).toMatchObject({
      target: `${certs}/etc/ssl/certs/ca-bundle.crt`,
    });
    expect(byPath(entries, 'app/config.txt')).toMatchObject({ content: 'text\n', mode: 0o644 });
    expect(byPath(entries, 'app/data/blob.bin')).toMatchObject({ content: '/wD+', encoding: 'base64' });
    // no /bin/sh anywhere in this closure
    expect(shell).toBe('/sbin/nologin');
    const passwd = byPath(entries, 'etc/passwd');
    expect(passwd?.kind === 'file' && passwd.content).toBe(
      'root:x:0:0:root:/root:/sbin/nologin\napp:x:1000:1000:app:/home/app:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n',
    );
    expect(env).toEqual([
      `PATH=/bin:/usr/bin:${tool}/bin`,
      'HOME=/home/app',
      'SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt',
    ]);

    // the tar entries carry the owner; base64 content is decoded
    const tar = collectEntries(
      { storePaths: [], narHashes: [], narSize: 0, extra: entries },
      { storeDir: '/nix/store' },
    );
    const app = tar.find((e) => e.name.toString() === 'app')!;
    expect([app.uid, app.gid]).toEqual([1000, 1000]);
    expect(tar.find((e) => e.name.toString() === 'app/data/blob.bin')!.content).toEqual(
      Buffer.from([0xff, 0, 0xfe]),
    );
  });

  it('adds nothing under /nix for a workdir in the store: its directories keep their store modes', () => {
    const closure = fakeClosure();
    const user = { name: 'app', uid: 1000, gid: 1000, home: '/home/app' };
    for (const workdir of ['/nix/store/0123456789abcdfghijklmnpqrsvwxyz-tool/bin', '/nix/store', '/nix']) {
      const { entries } = customisationLayer(closure, { user, workdir });
      expect(entries.filter((e) => /^nix(\/|$)/.test(e.path))).toEqual([]);
    }
    // a workdir outside the store is still made and owned by the user
    const { entries } = customisationLayer(closure, { user, workdir: '/srv/app' });
    expect(byPath(entries, 'srv')).toEqual({ kind: 'dir', path: 'srv', mode: 0o755 });
    expect(byPath(entries, 'srv/app')).toMatchObject({ uid: 1000, gid: 1000 });
  });

  it('refuses a --copy into or above the store: it would change store paths or hide the store', () => {
    const closure = fakeClosure();
    const [tool] = closure.roots;
    const project = mkdtempSync(join(tmpdir(), 'nixoci-copy-'));
    writeFileSync(join(project, 'f.txt'), 'x\n');
    const src = join(project, 'f.txt');
    const parent = closure.storeDir.replace(/\/[^/]+$/, '');
    for (const dest of [
      `${tool}/bin/evil`,
      `${tool}/bin/`,
      `${closure.storeDir}/new`,
      closure.storeDir,
      parent,
    ]) {
      expect(() => customisationLayer(closure, { copies: [{ src, dest }] }), dest).toThrow(
        /is in or above the Nix store/,
      );
    }
    // beside the store is fine
    const { entries } = customisationLayer(closure, { copies: [{ src, dest: `${parent}-other/f.txt` }] });
    expect(entries.some((e) => e.kind === 'file' && e.path.endsWith('-other/f.txt'))).toBe(true);
  });

  it('puts a --copy whose DEST is the root (/, /., /app/..) in it under its own name, never as an empty name', () => {
    const closure = fakeClosure();
    const project = mkdtempSync(join(tmpdir(), 'nixoci-copy-'));
    mkdirSync(join(project, 'site'));
    writeFileSync(join(project, 'site', 'index.html'), 'hi\n');
    writeFileSync(join(project, 'f.txt'), 'x\n');
    for (const dest of ['/', '/.', '/..', '/app/..', '//']) {
      const { entries } = customisationLayer(closure, {
        copies: [
          { src: join(project, 'f.txt'), dest },
          { src: join(project, 'site'), dest },
        ],
      });
      expect(
        entries.filter((e) => e.path === ''),
        dest,
      ).toEqual([]);
      expect(byPath(entries, 'f.txt'), dest).toMatchObject({ kind: 'file', content: 'x\n' });
      expect(byPath(entries, 'site'), dest).toMatchObject({ kind: 'dir' });
      expect(byPath(entries, 'site/index.html'), dest).toMatchObject({ kind: 'file', content: 'hi\n' });
    }
  });

  it('follows a --copy SRC that is a symlink (a `result` link), keeping the links below it', () => {
    const closure = fakeClosure();
    const [tool] = closure.roots;
    const project = mkdtempSync(join(tmpdir(), 'nixoci-copy-'));
    symlinkSync(tool!, join(project, 'result'));
    symlinkSync('../outside.toml', join(project, 'config.toml'));
    // a relative link out of the project, to a file that the image does not have
    const shared = `${project}-shared.toml`;
    writeFileSync(shared, 'k = 1\n');
    symlinkSync(`../${basename(shared)}`, join(project, 'shared.toml'));
    mkdirSync(join(project, 'site'));
    symlinkSync('index.html', join(project, 'site', 'home.html'));
    symlinkSync(join(project, 'site'), join(project, 'site-link'));
    const { entries } = customisationLayer(closure, {
      copies: [
        { src: join(project, 'result'), dest: '/srv/tool' },
        { src: join(project, 'shared.toml'), dest: '/app/' },
        { src: join(project, 'site-link'), dest: '/www' },
      ],
    });
    expect(byPath(entries, 'srv/tool')).toMatchObject({ kind: 'dir' });
    expect(byPath(entries, 'srv/tool/bin/tool')).toMatchObject({
      kind: 'file',
      content: '#!/bin/sh\n',
      mode: 0o755,
    });
    // under the link's own name, with the content of its target
    expect(byPath(entries, 'app/shared.toml')).toMatchObject({ kind: 'file', content: 'k = 1\n' });
    expect(byPath(entries, 'www/home.html')).toEqual({
      kind: 'symlink',
      path: 'www/home.html',
      target: 'index.html',
    });
    // a SRC link to nothing is named as such
    expect(() =>
      customisationLayer(closure, {
        copies: [{ src: join(project, 'config.toml'), dest: '/app/config.toml' }],
      }),
    ).toThrow(/config\.toml is a symlink to \.\.\/outside\.toml, which cannot be read: ENOENT/);
  });

  it('refuses a --copy file name or symlink target that is not UTF-8, naming it', () => {
    const closure = fakeClosure();
    const copy = (make: (dir: string) => void): (() => unknown) => {
      const dir = mkdtempSync(join(tmpdir(), 'nixoci-copy-'));
      make(dir);
      return () => customisationLayer(closure, { copies: [{ src: dir, dest: '/data/' }] });
    };
    const badName = Buffer.from('bad\xffname', 'latin1');
    const file = copy((dir) => writeFileSync(Buffer.concat([Buffer.from(`${dir}/`), badName]), 'x'));
    // shown as \xff, the byte it is, not as U+FFFD
    expect(file).toThrow(/\/bad\\xffname: the file name is not valid UTF-8/);
    // a symlink target read as text would have pointed at `bad\ufffdname`, which is not the file
    const link = copy((dir) => symlinkSync(badName, join(dir, 'link')));
    expect(link).toThrow(/\/link -> bad\\xffname: the symlink target is not valid UTF-8/);
  });

  it('links no bin/ name that is not UTF-8 (a link made from the decoded name would dangle)', () => {
    const closure = fakeClosure();
    const [tool] = closure.roots;
    writeFileSync(Buffer.from(`${tool}/bin/to\xffol`, 'latin1'), '#!/bin/sh\n', { mode: 0o755 });
    const { entries } = customisationLayer(closure);
    const links = entries.filter((e) => e.kind === 'symlink' && e.path.startsWith('bin/'));
    expect(links.map((e) => e.path)).toEqual(['bin/env', 'bin/tool']);
  });

  it('encodes a non-root owner in the tar header, with no user name', () => {
    const h = encodeHeader({
      name: Buffer.from('app'),
      type: 'dir',
      mode: 0o755,
      size: 0,
      uid: 1000,
      gid: 1001,
    });
    expect(h.subarray(108, 116).toString('latin1')).toBe('0001750\0');
    expect(h.subarray(116, 124).toString('latin1')).toBe('0001751\0');
    expect(h.subarray(265, 297).equals(Buffer.alloc(32))).toBe(true);
    const root = encodeHeader({ name: Buffer.from('app'), type: 'dir', mode: 0o755, size: 0 });
    expect(root.subarray(265, 269).toString('latin1')).toBe('root');
  });
});
