// `nixoci inspect` and `nixoci diff` on images with compressed layers and on compressed archives, as
// skopeo writes them (`skopeo copy --dest-compress-format zstd|zstd:chunked|gzip`) and as users keep
// them (`docker save app | zstd`). An image nixoci built is the reference: every copy must show
// the same diffIDs and store paths.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { DiffReportJson, InspectImageJson } from '../../src/cli/report-schema.js';
import { cliBin, nixoci, nixociJson } from '../helpers/cli.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';

const work = mkdtempSync(join(tmpdir(), 'nixoci-read-compressed-'));
const base = join(work, 'base');
let closure: FixtureClosure;
let want: InspectImageJson['image'];

const skopeo = (from: string, to: string, ...flags: string[]): void => {
  execFileSync('skopeo', ['copy', '-q', ...flags, from, to]);
};
const rows = (img: InspectImageJson['image']) => img.layers.map((l) => [l.diffId, l.storePaths]);

beforeAll(async () => {
  closure = await buildFixtureClosure({ tag: 'read-compressed' });
  await nixociJson(['build', '--graph', closure.graphFile, '--to', `oci:${base}:v1`, '--no-cache']);
  want = (await nixociJson<InspectImageJson>(['inspect', `oci:${base}:v1`])).image;
  expect(want.layers.map((l) => l.storePaths[0]).sort()).toEqual(closure.paths);
});

describe('compressed archives', () => {
  it('reads a zstd-compressed docker-archive from a file and a pipe (it was: not a tar archive)', async () => {
    const tar = join(work, 'plain.tar');
    skopeo(`oci:${base}:v1`, `docker-archive:${tar}:hx-c-plain:v1`);
    execFileSync('zstd', ['-q', tar, '-o', `${tar}.zst`]);
    for (const script of [
      `"$1" inspect --json "docker-archive:$2.zst"`,
      `"$1" inspect --json docker-archive:- < "$2.zst"`,
      `"$1" inspect --json docker-archive:<(cat "$2.zst")`,
    ]) {
      const r = spawnSync('bash', ['-c', script, 'bash', cliBin, tar], { encoding: 'utf8' });
      expect(r.status, `${script}: ${r.stderr}`).toBe(0);
      const got = (JSON.parse(r.stdout) as InspectImageJson).image;
      expect(rows(got)).toEqual(rows(want));
      expect(got.layers.every((l) => l.storePathsFrom === 'history')).toBe(true);
    }
    const d = await nixociJson<DiffReportJson>(['diff', `docker-archive:${tar}.zst`, `oci:${base}:v1`]);
    expect([d.onlyA, d.onlyB]).toEqual([[], []]);
    // cut short, and damaged: the zstd data is at fault, said as such, without a stack trace
    const zst = readFileSync(`${tar}.zst`);
    writeFileSync(join(work, 'cut.tar.zst'), zst.subarray(0, zst.length - 20));
    const bad = Buffer.from(zst);
    bad.fill(0x55, 40, 200);
    writeFileSync(join(work, 'bad.tar.zst'), bad);
    for (const f of ['cut.tar.zst', 'bad.tar.zst']) {
      const r = await nixoci(['inspect', `docker-archive:${join(work, f)}`]);
      expect(r.code, f).toBe(1);
      // said once: it was 'read docker-archive:F: docker-archive:F: the zstd data …'
      expect(r.stderr, f).toContain(
        `error: read docker-archive:${join(work, f)}: the zstd data is damaged or cut short: `,
      );
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});

describe('oci-archive:', () => {
  it('reads an OCI archive as skopeo writes it, plain, gzip- or zstd-compressed (it was: not read)', async () => {
    const tar = join(work, 'zstd-layers.oci.tar');
    skopeo(`oci:${base}:v1`, `oci-archive:${tar}:v1`, '--dest-compress', '--dest-compress-format', 'zstd');
    execFileSync('zstd', ['-q', tar, '-o', `${tar}.zst`]);
    execFileSync('sh', ['-c', 'gzip -c "$1" > "$1.gz"', 'sh', tar]);
    const dir = join(work, 'zstd-layers');
    skopeo(`oci:${base}:v1`, `oci:${dir}:v1`, '--dest-compress', '--dest-compress-format', 'zstd');
    const layout = (await nixociJson<InspectImageJson>(['inspect', `oci:${dir}:v1`])).image;
    for (const script of [
      `"$1" inspect --json "oci-archive:$2"`,
      `"$1" inspect --json "oci-archive:$2:v1"`,
      `"$1" inspect --json "oci-archive:$2.gz"`,
      `"$1" inspect --json oci-archive:- < "$2.zst"`,
      `"$1" inspect --json oci-archive:<(cat "$2.zst"):v1`,
    ]) {
      const r = spawnSync('bash', ['-c', script, 'bash', cliBin, tar], { encoding: 'utf8' });
      expect(r.status, `${script}: ${r.stderr}`).toBe(0);
      const got = (JSON.parse(r.stdout) as InspectImageJson).image;
      expect(rows(got)).toEqual(rows(want));
      // the same manifest as the layout skopeo wrote with the same flags
      expect([got.manifestDigest, got.layers]).toEqual([layout.manifestDigest, layout.layers]);
    }
    const d = await nixociJson<DiffReportJson>(['diff', `oci-archive:${tar}.zst`, `oci:${base}:v1`]);
    expect([d.onlyA, d.onlyB]).toEqual([[], []]);
    // a layout tarred by hand (entries named ./index.json, ./blobs/…)
    const byHand = join(work, 'by-hand.tar');
    execFileSync('tar', ['-cf', byHand, '-C', base, '.']);
    const got = (await nixociJson<InspectImageJson>(['inspect', `oci-archive:${byHand}:v1`])).image;
    expect(got.layers).toEqual(want.layers);
  });

  it('names what is wrong: a tag it lacks, a docker-archive, a file that is no tar', async () => {
    const tar = join(work, 'zstd-layers.oci.tar');
    const docker = join(work, 'plain.tar');
    writeFileSync(join(work, 'text'), 'hello\n'.repeat(200));
    for (const [ref, text, hint] of [
      [`oci-archive:${tar}:v2`, `read oci-archive:${tar}:v2: no image tagged v2`, 'hint: its tags: v1'],
      [
        `oci-archive:${docker}`,
        `read oci-archive:${docker}: it is a docker-archive (manifest.json, no index.json), not an OCI archive`,
        'hint: read it as docker-archive:FILE',
      ],
      [
        `docker-archive:${tar}`,
        `error: read docker-archive:${tar}: it is an OCI archive (index.json, no manifest.json), not a docker-archive`,
        'hint: read it as oci-archive:FILE[:TAG]',
      ],
      [
        `oci-archive:${join(work, 'text')}`,
        'not a tar archive (bad header checksum)',
        'hint: oci-archive: must name a tar of an OCI layout',
      ],
    ]) {
      const r = await nixoci(['inspect', ref!]);
      expect(r.code, ref).toBe(1);
      expect(r.stderr, ref).toContain(text);
      expect(r.stderr, ref).toContain(hint);
    }
  });
});

describe('compressed layers', () => {
  it('reads zstd, zstd:chunked and gzip copies by skopeo; diff matches their layers by diffID', async () => {
    const copies: Record<string, string> = {};
    for (const format of ['zstd', 'zstd:chunked', 'gzip']) {
      const dir = join(work, format.replace(':', '-'));
      skopeo(`oci:${base}:v1`, `oci:${dir}:v1`, '--dest-compress', '--dest-compress-format', format);
      copies[format] = `oci:${dir}:v1`;
      const got = (await nixociJson<InspectImageJson>(['inspect', copies[format]])).image;
      expect(rows(got), format).toEqual(rows(want));
      const type = format === 'gzip' ? 'gzip' : 'zstd';
      expect(got.layers.every((l) => l.mediaType === `application/vnd.oci.image.layer.v1.tar+${type}`)).toBe(
        true,
      );
    }
    const d = await nixociJson<DiffReportJson>(['diff', copies.zstd!, copies.gzip!]);
    expect([d.onlyA, d.onlyB, d.storePaths.changed]).toEqual([[], [], []]);
    expect(d.shared).toHaveLength(want.layerCount);
  });
});
