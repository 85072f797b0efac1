import { describe, expect, it } from 'vitest';
import { cell, pathsLabel } from '../../src/cli/image-report.js';
import { layersOf, type ImageLayerInfo } from '../../src/registry/read/image-source.js';

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
