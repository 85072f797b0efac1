import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cell, pathsLabel } from '../../src/cli/image-report.js';
import { layersOf, type ImageLayerInfo } from '../../src/registry/read/image-source.js';
import { nixoci } from '../helpers/cli.js';

/** An OCI layout by hand: one image per tag, each layer a blob annotated with the store paths given. */
function annotatedLayout(images: Record<string, [content: string, storePaths: string][]>): string {
  const dir = mkdtempSync(join(tmpdir(), 'nixoci-hx-b-report-'));
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const blob = (data: string, mediaType: string) => {
    const hex = createHash('sha256').update(data).digest('hex');
    writeFileSync(join(dir, 'blobs', 'sha256', hex), data);
    return { mediaType, digest: `sha256:${hex}`, size: Buffer.byteLength(data) };
  };
  const manifests = Object.entries(images).map(([tag, layers]) => {
    const descs = layers.map(([content, paths]) => ({
      ...blob(content, 'application/vnd.oci.image.layer.v1.tar'),
      annotations: { 'dev.nixoci.store-paths': paths },
    }));
    const config = JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: descs.map((d) => d.digest) },
    });
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: blob(config, 'application/vnd.oci.image.config.v1+json'),
      layers: descs,
    });
    return {
      ...blob(manifest, 'application/vnd.oci.image.manifest.v1+json'),
      annotations: { 'org.opencontainers.image.ref.name': tag },
    };
  });
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests }));
  return dir;
}

describe('image text in tables', () => {
  it('keeps an image from breaking the table or sending escape sequences to the terminal', () => {
    expect(cell('RUN a <<EOF\nline1\x1b[31mRED\r\n\tEOF\x00\x7f\x9b')).toBe(
      'RUN a <<EOF line1\\x1b[31mRED  \tEOF\\x00\\x7f\\x9b'.replace('\t', ' '),
    );
    const layer = (createdBy: string | null, storePaths: string[] = []): ImageLayerInfo => ({
      index: 0,
      digest: null,
      diffId: `sha256:${'0'.repeat(64)}` as ImageLayerInfo['diffId'],
      size: 0,
      mediaType: 'x',
      storePaths,
      storePathsFrom: storePaths.length > 0 ? 'annotation' : 'none',
      createdBy,
    });
    expect(pathsLabel(layer('COPY a\n/b'))).toBe('(COPY a /b)');
    expect(pathsLabel(layer(null, ['/nix/store/x\x1b]0;t\x07']))).toBe('/nix/store/x\\x1b]0;t\\x07');
    expect(pathsLabel(layer(null))).toBe('(no store paths)');
    // a bucket of many paths: the first four, and how many more
    const many = Array.from({ length: 7 }, (_, i) => `/nix/store/${i}`);
    expect(pathsLabel(layer(null, many))).toBe(
      '/nix/store/0 /nix/store/1 /nix/store/2 /nix/store/3 … +3 more (--json lists all)',
    );
    expect(pathsLabel(layer(null, many.slice(0, 5)))).toBe(many.slice(0, 5).join(' '));
  });

  it('takes store paths from history entries that describe a layer, not from commands that mention one', () => {
    const sp = (c: string, name: string) => `/nix/store/${c.repeat(32)}-${name}`;
    const d = (c: string) => `sha256:${c.repeat(64)}` as ImageLayerInfo['diffId'];
    const layers = ['1', '2', '3'].map(() => ({ mediaType: 'x', digest: null, size: 1, annotations: {} }));
    const config = {
      rootfs: { type: 'layers', diff_ids: [d('1'), d('2'), d('3')] },
      history: [
        { created_by: `nixoci: ${sp('a', 'app')}` },
        { created_by: `RUN ["${sp('b', 'busybox')}/bin/sh","-c","echo > /etc/f"]` },
        { created_by: 'dockerTools', comment: `store paths: ['${sp('c', 'lib')}']` },
      ],
    };
    const rows = layersOf(layers, config, 'x');
    expect(rows.map((r) => [r.storePaths, r.storePathsFrom])).toEqual([
      [[sp('a', 'app')], 'history'],
      [[], 'none'],
      [[sp('c', 'lib')], 'history'],
    ]);
  });
});

describe('nixoci diff as text', () => {
  it('escapes store path annotations in every row, not only in the layers one image has', async () => {
    const sp = (c: string, name: string) => `/nix/store/${c.repeat(32)}-${name}`;
    const dir = annotatedLayout({
      a: [
        ['shared', sp('a', 'lib\x1b]0;title\x07')],
        ['old', sp('b', 'app\x1b[2J')],
        ['gone', sp('c', 'gone\x1b[31m')],
      ],
      b: [
        ['shared', sp('a', 'lib\x1b]0;title\x07')],
        ['new', sp('d', 'app\x1b[2J')],
        ['added', sp('e', 'new\x1b[31m')],
      ],
    });
    const r = await nixoci(['diff', `oci:${dir}:a`, `oci:${dir}:b`]);
    rmSync(dir, { recursive: true });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f]/);
    expect(r.stdout).toContain(`${sp('a', 'lib\\x1b]0;title\\x07')}\n`); // shared row
    expect(r.stdout).toContain(
      `~ app\\x1b[2J changed from ${sp('b', 'app\\x1b[2J')} to ${sp('d', 'app\\x1b[2J')}`,
    );
    expect(r.stdout).toContain(`+ ${sp('e', 'new\\x1b[31m')} (layer 2`);
    expect(r.stdout).toContain(`- ${sp('c', 'gone\\x1b[31m')} (layer 2`);
  });
});

describe('error messages that quote an image', () => {
  it("escapes an image's tags in the hint instead of sending their escape sequences to the terminal", async () => {
    const dir = annotatedLayout({ v1: [], 'v2\x1b]0;title\x07\x1b[2J': [] });
    const r = await nixoci(['inspect', `oci:${dir}:v9`]);
    rmSync(dir, { recursive: true });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `nixoci: error: read oci:${dir}:v9: no image tagged v9\nhint: its tags: v1, v2\\x1b]0;title\\x07\\x1b[2J\n`,
    );
  });
});

describe('counts in the text', () => {
  it('says 1 layer and 1 store path, not 1 layers and 1 store paths', async () => {
    const app = `/nix/store/${'a'.repeat(32)}-app`;
    const dir = annotatedLayout({ a: [['x', app]], b: [['x', app]] });
    const inspect = await nixoci(['inspect', `oci:${dir}:a`]);
    const diff = await nixoci(['diff', `oci:${dir}:a`, `oci:${dir}:b`]);
    rmSync(dir, { recursive: true });
    expect(inspect.stdout).toContain('\ntotal: 1 layer, 1 B uncompressed, 1 store path (from annotation)\n');
    expect(diff.stdout).toContain(`\nB: oci:${dir}:b  linux/amd64  1 layer, 1 B uncompressed  config `);
    expect(diff.stdout).toContain(
      '\nshared: 1 layer, 1 B uncompressed in A, 1 B uncompressed in B; only in A: 0 (0 B); only in B: 0 (0 B)\n',
    );
  });
});
