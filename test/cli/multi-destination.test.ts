// One run with several destinations tars each layer from the store once: a later destination reads
// the blob back from the file an earlier one wrote (an OCI layout's blob, a layer inside a
// docker-archive), or compresses that tar, and writes the same bytes a run of its own would.
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { docker, dockerRmi, dockerRunOutput } from '../helpers/docker.js';
import { nixociJson } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';

interface Report {
  manifestDigest: string;
  bytesRead: number;
  targets: { manifestDigest: string }[];
}

const work = mkdtempSync(join(tmpdir(), 'nixoci-multi-'));
const tmp = (name: string): string => join(work, name);
let fx: FixtureClosure;
/** Store bytes one single-destination run reads for the whole closure. */
let once: number;

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'multi-destination' });
  once = (await build([`oci:${tmp('alone')}`])).bytesRead;
}, 600_000);

function build(to: string[], more: string[] = []): Promise<Report> {
  return nixociJson<Report>([
    'build',
    '--graph',
    fx.graphFile,
    '--entrypoint',
    `${fx.app}/bin/app`,
    '--no-cache',
    ...more,
    ...to.flatMap((t) => ['--to', t]),
  ]);
}

/** Every blob of an OCI layout, by file name. */
function blobs(dir: string): Map<string, Buffer> {
  const d = join(dir, 'blobs', 'sha256');
  return new Map(readdirSync(d).map((n) => [n, readFileSync(join(d, n))]));
}

describe('several destinations in one run', () => {
  it('reads the store once for an OCI layout and a docker-archive, which docker loads and runs', async () => {
    // a layer of a MiB or more is tarred by a worker thread: the closure has one
    expect(once).toBeGreaterThan(1 << 20);
    const tag = 'hx-a-multi:archive';
    const both = await build([`oci:${tmp('both')}`, `docker-archive:${tmp('both.tar')}:${tag}`]);
    expect(both.bytesRead).toBe(once);
    // the same bytes as runs of their own
    const alone = await build([`docker-archive:${tmp('alone.tar')}:${tag}`]);
    expect(readFileSync(tmp('both.tar')).equals(readFileSync(tmp('alone.tar')))).toBe(true);
    expect(both.targets.map((t) => t.manifestDigest)).toEqual([alone.manifestDigest, alone.manifestDigest]);
    expect(blobs(tmp('both'))).toEqual(blobs(tmp('alone')));
    await dockerRmi(tag);
    expect((await docker(['load', '-i', tmp('both.tar')])).stdout).toContain(tag);
    expect(await dockerRunOutput(tag)).toContain('fixture app multi-destination');
    await dockerRmi(tag);
  });

  it('compresses the tar an earlier destination wrote instead of tarring the store again', async () => {
    // the archive first: zstd layers for the layout are made from the archive's layers
    const zstd = await build(
      [`docker-archive:${tmp('z.tar')}`, `oci:${tmp('z')}`],
      ['--compression', 'zstd'],
    );
    expect(zstd.bytesRead).toBe(once);
    const zstdAlone = await build([`oci:${tmp('z-alone')}`], ['--compression', 'zstd']);
    expect(zstd.targets[1]!.manifestDigest).toBe(zstdAlone.manifestDigest);
    expect(blobs(tmp('z'))).toEqual(blobs(tmp('z-alone')));
    // a registry's gzip layers from the layout's uncompressed blobs
    const repo = `hx-a-multi-${process.pid}`;
    const ref = `docker://${testEnv().registry}/${repo}:v1`;
    const gzip = await build([`oci:${tmp('g')}`, ref]);
    expect(gzip.bytesRead).toBe(once);
    const gzipAlone = await build([`docker://${testEnv().registry}/${repo}:alone`]);
    expect(gzip.targets[1]!.manifestDigest).toBe(gzipAlone.manifestDigest);
  });
});
