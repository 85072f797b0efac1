// `nixoci inspect` of images other tools write in unusual shapes: an index inside an index (as some
// tools write for attestations or nested platforms), in an OCI layout and in a registry. The images
// are written here byte by byte (skopeo cannot copy a nested index), then pushed by plain HTTP. And
// skopeo's transports that nixoci does not read (containers-storage:, dir:), and oci-archive:.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { InspectImageJson } from '../../src/cli/report-schema.js';
import { nixoci, nixociJson } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';

const env = testEnv();
const work = mkdtempSync(join(tmpdir(), 'nixoci-unusual-'));
const INDEX = 'application/vnd.oci.image.index.v1+json';
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

interface Desc {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string };
  annotations?: Record<string, string>;
}

/** Blobs in the order they were made (children before the documents that name them). */
const blobs: { desc: Desc; bytes: Buffer }[] = [];
function put(mediaType: string, content: Buffer | object, extra: Partial<Desc> = {}): Desc {
  const bytes = Buffer.isBuffer(content) ? content : Buffer.from(JSON.stringify(content));
  const desc = {
    mediaType,
    digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
    size: bytes.length,
  };
  blobs.push({ desc, bytes });
  return { ...desc, ...extra };
}

const layer = put('application/vnd.oci.image.layer.v1.tar', Buffer.alloc(1024)); // an empty tar
const diffId = layer.digest;
const image = (architecture: string): Desc => {
  const config = put('application/vnd.oci.image.config.v1+json', {
    architecture,
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: [diffId] },
  });
  return put(
    MANIFEST,
    { schemaVersion: 2, mediaType: MANIFEST, config, layers: [layer] },
    { platform: { os: 'linux', architecture } },
  );
};
const amd64 = image('amd64');
const arm64 = image('arm64');
const index = (manifests: Desc[]): Desc => put(INDEX, { schemaVersion: 2, mediaType: INDEX, manifests });
// buildkit's attestation: unknown/unknown, next to the platforms
const attestation = {
  ...image('unknown'),
  platform: { os: 'unknown', architecture: 'unknown' },
  annotations: { 'vnd.docker.reference.type': 'attestation-manifest' },
};
const platforms = index([amd64, arm64, attestation]);
const nested = index([platforms]); // the entry names no platform
const deep = [platforms];
for (let i = 0; i < 4; i++) deep.push(index([deep.at(-1)!]));
const tooDeep = deep.at(-1)!;

const layout = join(work, 'layout');
beforeAll(async () => {
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  for (const b of blobs) writeFileSync(join(layout, 'blobs', 'sha256', b.desc.digest.slice(7)), b.bytes);
  writeFileSync(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const tag = (d: Desc, name: string) => ({
    ...d,
    annotations: { 'org.opencontainers.image.ref.name': name },
  });
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [tag(nested, 'nested'), tag(tooDeep, 'deep')] }),
  );
  // the same documents in a registry: blobs, then manifests by digest, children first
  const base = `http://${env.registry}/v2/nixoci-test/unusual-index`;
  for (const { desc, bytes } of blobs) {
    const url =
      desc.mediaType === INDEX || desc.mediaType === MANIFEST
        ? `${base}/manifests/${desc.digest}`
        : await fetch(`${base}/blobs/uploads/`, { method: 'POST' }).then((r) => {
            const loc = new URL(r.headers.get('location')!, base);
            loc.searchParams.set('digest', desc.digest);
            return loc.toString();
          });
    const res = await fetch(url, { method: 'PUT', body: bytes, headers: { 'content-type': desc.mediaType } });
    expect(res.status, `${url}: ${await res.text()}`).toBe(201);
  }
  for (const [d, tag] of [
    [nested, 'nested'],
    [tooDeep, 'deep'],
  ] as const) {
    const bytes = blobs.find((b) => b.desc.digest === d.digest)!.bytes;
    const res = await fetch(`${base}/manifests/${tag}`, {
      method: 'PUT',
      body: bytes,
      headers: { 'content-type': INDEX },
    });
    expect(res.status).toBe(201);
  }
});

describe('inspect of an index inside an index', () => {
  for (const transport of ['oci', 'docker'] as const) {
    const ref = (tag: string) =>
      transport === 'oci'
        ? `oci:${layout}:${tag}`
        : `docker://${env.registry}/nixoci-test/unusual-index:${tag}`;

    it(`${transport}: follows it to the platform asked for, never to the attestation`, async () => {
      for (const [arch, want] of [
        [undefined, amd64],
        ['arm64', arm64],
        ['linux/amd64', amd64],
      ] as const) {
        const r = await nixociJson<InspectImageJson>([
          'inspect',
          ref('nested'),
          ...(arch ? ['--arch', arch] : []),
        ]);
        expect(r.image, arch).toMatchObject({
          indexDigest: nested.digest,
          manifestDigest: want.digest,
          mediaType: MANIFEST,
          architecture: want.platform!.architecture,
        });
        expect(r.image.layers.map((l) => [l.digest, l.diffId])).toEqual([[layer.digest, diffId]]);
      }
      const none = await nixoci(['inspect', ref('nested'), '--arch', 's390x']);
      expect(none.code).toBe(1);
      expect(none.stderr).toContain('no s390x image in the index (it has: linux/amd64, linux/arm64)');
    });

    it(`${transport}: refuses indexes nested more than 4 deep, clearly`, async () => {
      const r = await nixoci(['inspect', ref('deep')]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('indexes nested more than 4 deep, without a manifest');
    });
  }
});

describe('transports nixoci does not read', () => {
  it('says so with what to do instead, for inspect and diff (it was: unexpected argument)', async () => {
    for (const [args, ref] of [
      [['inspect', 'containers-storage:hx-r-app:v1'], 'containers-storage:hx-r-app:v1'],
      [['diff', 'containers-storage:hx-r-app:v1', `oci:${layout}:nested`], 'containers-storage:hx-r-app:v1'],
      [['inspect', `dir:${work}`], `dir:${work}`],
    ] as const) {
      const r = await nixoci([...args]);
      expect(r.code, args.join(' ')).toBe(2);
      const transport = ref.slice(0, ref.indexOf(':'));
      expect(r.stderr).toContain(`nixoci ${args[0]}: ${ref}: nixoci does not read ${transport}: images`);
    }
  });

  it('reads an OCI archive of a nested index, as the layout it holds (it was: not read)', async () => {
    const archive = join(work, 'image.tar');
    execFileSync('tar', ['-cf', archive, '-C', layout, '.']);
    const read = await nixociJson<InspectImageJson>(['inspect', `oci-archive:${archive}:nested`]);
    expect(read.image.manifestDigest).toBe(amd64.digest);
    const d = await nixoci(['diff', `oci-archive:${archive}:nested`, `oci:${layout}:nested`]);
    expect(d.code, d.stderr).toBe(0);
  });
});
