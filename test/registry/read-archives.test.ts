// `nixoci inspect docker-archive:` of archives users have, made here by the tools that write them:
// `docker save` (one image, several, compressed with gzip as `docker save app | gzip` keeps it), and
// skopeo's oci-archive (podman save --format oci-archive writes the same shape), given as docker-archive:
// (named as such, and read as oci-archive:).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InspectImageJson } from '../../src/cli/report-schema.js';
import { cliBin, nixoci, nixociJson } from '../helpers/cli.js';
import { docker, dockerRmi } from '../helpers/docker.js';

const work = mkdtempSync(join(tmpdir(), 'nixoci-archives-'));
const tag = `nixoci-test/archives:${process.pid}`;
// a second image of this file's own, tagged (no image another test file leaves behind is assumed)
const tag2 = `nixoci-test/archives-two:${process.pid}`;
const saved = join(work, 'one.tar');

beforeAll(async () => {
  const ctx = join(work, 'ctx');
  mkdirSync(ctx);
  writeFileSync(join(ctx, 'f1'), 'one\n');
  writeFileSync(join(ctx, 'f2'), 'two\n');
  writeFileSync(join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY f1 /f1\nCOPY f2 /f2\n');
  await docker(['build', '-q', '--network', 'none', '-t', tag, ctx], { env: { DOCKER_BUILDKIT: '0' } });
  await docker(['save', tag, '-o', saved]);
  const ctx2 = join(work, 'ctx2');
  mkdirSync(ctx2);
  writeFileSync(join(ctx2, 'f3'), 'three\n');
  writeFileSync(join(ctx2, 'Dockerfile'), 'FROM scratch\nCOPY f3 /f3\n');
  await docker(['build', '-q', '--network', 'none', '-t', tag2, ctx2], { env: { DOCKER_BUILDKIT: '0' } });
});

afterAll(() => dockerRmi(tag, tag2));

const sh = (script: string) => spawnSync('bash', ['-c', script, 'bash', cliBin, saved], { encoding: 'utf8' });

describe('docker-archive: as docker save writes it', () => {
  it('reads a gzip-compressed archive from a file and from standard input, as docker load does', async () => {
    const want = (await nixociJson<InspectImageJson>(['inspect', `docker-archive:${saved}`])).image;
    expect(want.layerCount).toBe(2);
    spawnSync('sh', ['-c', 'gzip -c "$1" > "$1.gz"', 'sh', saved]);
    // it was: not a tar archive (gzip-compressed), with a command to decompress it first
    for (const script of [
      `"$1" inspect --json "docker-archive:$2.gz"`,
      `"$1" inspect --json docker-archive:- < "$2.gz"`,
      `"$1" inspect --json docker-archive:<(cat "$2.gz")`,
    ]) {
      const r = sh(script);
      expect(r.status, `${script}: ${r.stderr}`).toBe(0);
      const got = (JSON.parse(r.stdout) as InspectImageJson).image;
      expect([got.configDigest, got.layers]).toEqual([want.configDigest, want.layers]);
    }
    const d = await nixoci(['diff', `docker-archive:${saved}`, `docker-archive:${saved}.gz`]);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toContain('only in A: 0 (0 B); only in B: 0 (0 B)');
    // cut short, and damaged: the gzip data is at fault, said as such
    const gz = readFileSync(`${saved}.gz`);
    writeFileSync(join(work, 'cut.tar.gz'), gz.subarray(0, gz.length - 20));
    const bad = Buffer.from(gz);
    bad.fill(0x55, 40, 200);
    writeFileSync(join(work, 'bad.tar.gz'), bad);
    for (const f of ['cut.tar.gz', 'bad.tar.gz']) {
      const r = await nixoci(['inspect', `docker-archive:${join(work, f)}`]);
      expect(r.code, f).toBe(1);
      // said once: it was 'read docker-archive:F: docker-archive:F: the gzip data …'
      expect(r.stderr, f).toContain(
        `error: read docker-archive:${join(work, f)}: the gzip data is damaged or cut short: `,
      );
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('says an OCI archive (skopeo copy … oci-archive:) is one and how to read it (it was: no manifest.json)', async () => {
    const oa = join(work, 'oa.tar');
    execFileSync('skopeo', ['copy', '-q', `docker-archive:${saved}`, `oci-archive:${oa}:v1`]);
    const r = await nixoci(['inspect', `docker-archive:${oa}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `error: read docker-archive:${oa}: it is an OCI archive (index.json, no manifest.json), not a docker-archive`,
    );
    expect(r.stderr).toContain('hint: read it as oci-archive:FILE[:TAG]');
    // the hint works
    const got = await nixociJson<InspectImageJson>(['inspect', `oci-archive:${oa}:v1`]);
    const want = await nixociJson<InspectImageJson>(['inspect', `docker-archive:${saved}`]);
    // skopeo rewrites the config as OCI's; the layers are the same
    expect(got.image.layers.map((l) => l.diffId)).toEqual(want.image.layers.map((l) => l.diffId));
  });

  it('picks an image of several by NAME:TAG or by @N as skopeo does, untagged ones too', async () => {
    const id = (await docker(['image', 'inspect', '-f', '{{.Id}}', tag])).stdout.trim();
    const multi = join(work, 'multi.tar');
    // an image saved by its ID has no RepoTags: only @N can name it
    await docker(['save', id, tag2, '-o', multi]);
    const mf = JSON.parse(execFileSync('tar', ['-xOf', multi, 'manifest.json'], { encoding: 'utf8' })) as {
      Config: string;
      RepoTags: string[] | null;
    }[];
    const which = await nixoci(['inspect', `docker-archive:${multi}`]);
    expect(which.code).toBe(1);
    expect(which.stderr).toContain('the archive holds 2 images');
    expect(which.stderr).toContain('or docker-archive:FILE:@N for the Nth image from 0');
    for (const [n, entry] of mf.entries()) {
      const r = await nixociJson<InspectImageJson>(['inspect', `docker-archive:${multi}:@${n}`]);
      expect(r.image.configDigest).toBe(`sha256:${entry.Config.replace(/^blobs\/sha256\/|\.json$/g, '')}`);
    }
    const byTag = await nixociJson<InspectImageJson>(['inspect', `docker-archive:${multi}:${tag2}`]);
    expect(byTag.image.configDigest).toBe(
      (
        await nixociJson<InspectImageJson>([
          'inspect',
          `docker-archive:${multi}:@${mf.findIndex((e) => e.RepoTags)}`,
        ])
      ).image.configDigest,
    );
    const out = await nixoci(['inspect', `docker-archive:${multi}:@2`]);
    expect(out.code).toBe(1);
    expect(out.stderr).toContain(`docker-archive:${multi}:@2: no image @2 (the archive holds 2: @0 to @1)`);
  });
});
