// Shared by the registry tests: fixture closure → plan → layers → Image, and read-back checks of what
// a registry holds (every blob fetched and hashed; layer diff_ids recomputed from the blobs).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { Decompressor } from 'zstd-napi';
import { expect } from 'vitest';
import type { Closure } from '../../src/closure/closure.js';
import { loadGraphFile } from '../../src/closure/load.js';
import { sha256Digest } from '../../src/core/digest.js';
import { DEFAULT_CREATED, type Arch, type Image } from '../../src/image/image.js';
import { DigestCache } from '../../src/layer/cache.js';
import type { Compression } from '../../src/layer/compress.js';
import { makeLayers } from '../../src/layer/layer.js';
import { planLayers } from '../../src/layer/plan.js';
import type { ReadStats } from '../../src/layer/tar-stream.js';
import { buildFixtureClosure } from '../helpers/nix.js';

const closures = new Map<string, Promise<{ closure: Closure; app: string }>>();

/** The fixture closure for a tag (built once per test file); tags differ in the app path only. */
export function fixture(tag: string): Promise<{ closure: Closure; app: string }> {
  let p = closures.get(tag);
  if (!p) {
    p = buildFixtureClosure({ tag }).then(async (f) => ({
      closure: await loadGraphFile(f.graphFile),
      app: f.app,
    }));
    closures.set(tag, p);
  }
  return p;
}

export function uniqueRepo(name: string): string {
  return `nixoci-test/${name}-${randomBytes(4).toString('hex')}`;
}

export interface TestImage {
  image: Image;
  stats: ReadStats;
}

export function imageOf(
  closure: Closure,
  app: string,
  opts: { cache?: DigestCache; arch?: Arch; compression?: Compression; level?: number } = {},
): TestImage {
  const stats: ReadStats = { bytesRead: 0 };
  const layers = makeLayers(planLayers(closure), {
    compression: opts.compression ?? 'gzip',
    ...(opts.level !== undefined ? { level: opts.level } : {}),
    cache: opts.cache ?? new DigestCache(null),
    stats,
    storeDir: closure.storeDir,
  });
  const image: Image = {
    platform: { architecture: opts.arch ?? 'amd64', os: 'linux' },
    closure,
    layers,
    run: { entrypoint: [`${app}/bin/app`], env: ['PATH=/bin'], exposedPorts: [], labels: {} },
    created: DEFAULT_CREATED,
  };
  return { image, stats };
}

export function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { encoding: 'utf8', maxBuffer: 256 << 20, timeout: 120_000 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

/** GET from a registry with optional basic credentials. */
export async function registryGet(
  host: string,
  path: string,
  accept?: string,
  auth?: string,
): Promise<Response> {
  return fetch(`http://${host}${path}`, {
    headers: { ...(accept ? { accept } : {}), ...(auth ? { authorization: auth } : {}) },
  });
}

/**
 * Fetches the manifest at REF and every blob it names; checks each blob's digest and size, the
 * config's diff_ids against the decompressed layers, and the layer annotations' diff-ids.
 */
export async function verifyPushed(
  host: string,
  repo: string,
  reference: string,
  auth?: string,
): Promise<{ manifest: ManifestJson; config: ConfigJson }> {
  const res = await registryGet(
    host,
    `/v2/${repo}/manifests/${reference}`,
    'application/vnd.oci.image.manifest.v1+json',
    auth,
  );
  expect(res.status).toBe(200);
  const manifest = (await res.json()) as ManifestJson;
  const blob = async (digest: string, size: number): Promise<Buffer> => {
    const r = await registryGet(host, `/v2/${repo}/blobs/${digest}`, undefined, auth);
    expect(r.status).toBe(200);
    const bytes = Buffer.from(await r.arrayBuffer());
    expect(sha256Digest(bytes)).toBe(digest);
    expect(bytes.length).toBe(size);
    return bytes;
  };
  const config = JSON.parse(
    (await blob(manifest.config.digest, manifest.config.size)).toString('utf8'),
  ) as ConfigJson;
  expect(config.rootfs.diff_ids).toHaveLength(manifest.layers.length);
  for (const [i, l] of manifest.layers.entries()) {
    const bytes = await blob(l.digest, l.size);
    const tar = l.mediaType.endsWith('+gzip')
      ? gunzipSync(bytes)
      : l.mediaType.endsWith('+zstd')
        ? new Decompressor().decompress(bytes)
        : bytes;
    expect(sha256Digest(tar)).toBe(config.rootfs.diff_ids[i]);
    expect(l.annotations['dev.nixoci.diff-id']).toBe(config.rootfs.diff_ids[i]);
  }
  return { manifest, config };
}

export interface ManifestJson {
  mediaType: string;
  config: { digest: string; size: number; mediaType: string };
  layers: { digest: string; size: number; mediaType: string; annotations: Record<string, string> }[];
}

export interface ConfigJson {
  architecture: string;
  rootfs: { diff_ids: string[] };
}
