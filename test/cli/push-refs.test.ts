// `nixoci push` with references, tags and digests written as docker, skopeo and crane users write
// them (bin/nixoci.js on dist/, built by `npm run build`), against the real registries of
// scripts/services.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { nixoci } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';

interface Report {
  manifestDigest: string;
  targets: { target: string; tags?: string[] }[];
}

const env = testEnv();
let v1: FixtureClosure;

beforeAll(async () => {
  v1 = await buildFixtureClosure({ tag: 'v1' });
});

const repoName = (what: string): string => `hx-f-${what}-${randomBytes(4).toString('hex')}`;

async function tagsOf(repo: string): Promise<string[]> {
  const r = await fetch(`http://${env.registry}/v2/${repo}/tags/list`);
  return ((await r.json()) as { tags: string[] }).tags.sort();
}

describe('nixoci push: tags', () => {
  it('puts a --tag given twice, or equal to the reference tag, once, and names each tag once', async () => {
    const repo = repoName('tags');
    const ref = `docker://${env.registry}/${repo}:v1`;
    const r = await nixoci([
      'push',
      '--graph',
      v1.graphFile,
      ref,
      '--tag',
      'v2',
      '--tag',
      'v2',
      '--tag',
      'v1',
      '--json',
      '-v',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as Report;
    expect(report.targets[0]!.tags).toEqual([`${env.registry}/${repo}:v1`, `${env.registry}/${repo}:v2`]);
    const puts = r.stderr.split('\n').filter((l) => l.startsWith(`PUT /v2/${repo}/manifests/`));
    expect(puts.map((l) => l.split(' ')[1])).toEqual([
      `/v2/${repo}/manifests/v1`,
      `/v2/${repo}/manifests/v2`,
    ]);
    expect(await tagsOf(repo)).toEqual(['v1', 'v2']);
  });
});

describe('nixoci push: pinned digests', () => {
  it('does not tell a REPO:TAG@sha256:… push that its own tag is another name', async () => {
    const repo = repoName('pinned');
    const first = await nixoci(['push', '--graph', v1.graphFile, `${env.registry}/${repo}:a`, '--json']);
    expect(first.code, first.stderr).toBe(0);
    const digest = (JSON.parse(first.stdout) as Report).manifestDigest;
    const ref = `docker://${env.registry}/${repo}:b@${digest}`;
    const r = await nixoci(['push', '--graph', v1.graphFile, ref, '--tag', 'c']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`${ref} (amd64): ${digest}`);
    expect(r.stderr.split('\n').filter((l) => l.includes('also tagged'))).toEqual([
      `${ref}: also tagged ${env.registry}/${repo}:c`,
    ]);
    expect(await tagsOf(repo)).toEqual(['a', 'b', 'c']);
  });
});

describe('nixoci push: credentials from the docker config', () => {
  it('uses the auths entry docker login wrote for the host, not another spelling of it before it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hx-f-docker-config-'));
    const auth = (s: string): { auth: string } => ({ auth: Buffer.from(s).toString('base64') });
    writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({
        auths: {
          [`https://${env.registryBasic}/v1/`]: auth('old:stale'),
          [env.registryBasic]: auth(`${env.registryBasicUser}:${env.registryBasicPassword}`),
        },
      }),
    );
    const repo = repoName('auth');
    const r = await nixoci(['push', '--graph', v1.graphFile, `${env.registryBasic}/${repo}:v1`], {
      env: {
        DOCKER_CONFIG: dir,
        XDG_RUNTIME_DIR: dir,
        XDG_CONFIG_HOME: dir,
        REGISTRY_AUTH_FILE: '',
        NIXOCI_REGISTRY_USER: '',
        NIXOCI_REGISTRY_PASSWORD: '',
      },
    });
    expect(r.code, r.stderr).toBe(0);
  });
});

describe('nixoci push: credentials written into a reference', () => {
  it('refuses them with exit 2 and never echoes the password, in the reference or in --mount-from', async () => {
    const target = `${env.registry}/${repoName('creds')}`;
    for (const args of [
      [`https://me:s3cret@${target}:v1`],
      [`docker://https://me:s3cret@${target}:v1`],
      [target, '--mount-from', `me:s3cret@${env.registry}/app:v1`],
      [target, '--cache-from', `http://me:s3cret@${env.registry}/app:v1`],
    ]) {
      const r = await nixoci(['push', '--graph', v1.graphFile, ...args]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain('credentials do not go in an image reference');
      expect(r.stderr).not.toContain('s3cret');
    }
  });
});
