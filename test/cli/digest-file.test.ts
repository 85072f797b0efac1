// --digestfile and --image-refs (src/cli/result-files.ts) as CI pipelines use them: the digest
// compared with what the real registry, OCI layout and Docker engine hold, written only once the
// whole run succeeded, and written INTO standard output and FIFOs rather than replacing them.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  closeSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliBin, nixoci, nixociJson } from '../helpers/cli.js';
import { docker, dockerRmi } from '../helpers/docker.js';
import { repoRoot, testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { registryGet, run } from '../registry/push-helpers.js';

interface Report {
  manifestDigest: string;
  targets: { target: string; manifestDigest: string; imageId?: string; digest: string; imageRef: string }[];
}

const env = testEnv();
const work = mkdtempSync(join(tmpdir(), 'hx-digest-'));
const tmp = (name: string): string => join(work, name);
const unique = (name: string): string => `hx-digest-${name}-${randomBytes(4).toString('hex')}`;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
let fx: FixtureClosure;

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'v1' });
}, 600_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

const sha256 = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** The digest the registry gives the manifest (or index) under the tag. */
async function registryDigest(repo: string, tag: string): Promise<string> {
  const res = await registryGet(
    env.registry,
    `/v2/${repo}/manifests/${tag}`,
    `${OCI_INDEX}, ${OCI_MANIFEST}`,
  );
  expect(res.status).toBe(200);
  return res.headers.get('docker-content-digest')!;
}

/** What index.json of the layout says the tag points at. */
function layoutDigest(dir: string, tag: string): { digest: string; mediaType: string } {
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as {
    manifests: { digest: string; mediaType: string; annotations?: Record<string, string> }[];
  };
  const entry = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  expect(entry, `tag ${tag} in ${dir}/index.json`).toBeDefined();
  return entry!;
}

/** Runs the CLI with its standard output and error on the given descriptors or pipes. */
function spawnCli(
  args: string[],
  stdout: number | 'pipe' = 'pipe',
  onStderr?: (text: string, child: ReturnType<typeof spawn>) => void,
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cliBin, args, { cwd: repoRoot, stdio: ['ignore', stdout, 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => {
      stderr += b.toString('utf8');
      onStderr?.(stderr, child);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

describe('--digestfile and --image-refs', () => {
  it('push: the digest of the manifest the registry holds, as skopeo computes it; a replaced file keeps its mode', async () => {
    const repo = unique('push');
    const digestFile = tmp('push.digest');
    const refsFile = tmp('push.refs');
    writeFileSync(digestFile, 'old');
    // chmod after the write: the mode must not depend on the umask the test runs under
    chmodSync(digestFile, 0o600);
    const report = await nixociJson<Report>([
      'push',
      '--graph',
      fx.graphFile,
      `docker://${env.registry}/${repo}:v1`,
      '--digestfile',
      digestFile,
      '--image-refs',
      refsFile,
    ]);
    const written = readFileSync(digestFile, 'utf8');
    expect(written).toMatch(DIGEST); // no newline, as skopeo writes it
    expect(written).toBe(await registryDigest(repo, 'v1'));
    const raw = await run('skopeo', [
      'inspect',
      '--raw',
      '--tls-verify=false',
      `docker://${env.registry}/${repo}:v1`,
    ]);
    expect(written).toBe(sha256(raw));
    expect(statSync(digestFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(refsFile, 'utf8')).toBe(`${env.registry}/${repo}@${written}\n`);
    expect(report.targets[0]!.digest).toBe(written);
    expect(report.targets[0]!.imageRef).toBe(`${env.registry}/${repo}@${written}`);
  });

  it('several --arch to a registry and an OCI layout with the same compression: the index digest both hold', async () => {
    const repo = unique('multi');
    const layout = tmp('multi-layout');
    const digestFile = tmp('multi.digest');
    const refsFile = tmp('multi.refs');
    const r = await nixoci([
      'build',
      '--graph',
      fx.graphFile,
      '--arch',
      'amd64,arm64',
      '--compression',
      'gzip',
      '--to',
      `oci:${layout}:v1`,
      '--to',
      `docker://${env.registry}/${repo}:v1`,
      '--digestfile',
      digestFile,
      '--image-refs',
      refsFile,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const written = readFileSync(digestFile, 'utf8');
    expect(written).toBe(await registryDigest(repo, 'v1'));
    const inLayout = layoutDigest(layout, 'v1');
    expect(inLayout).toMatchObject({ digest: written, mediaType: OCI_INDEX });
    expect(readFileSync(refsFile, 'utf8')).toBe(
      `oci:${layout}:v1@${written}\n${env.registry}/${repo}@${written}\n`,
    );
  });

  it('an OCI layout: the manifest digest in index.json, written through a dangling symlink', async () => {
    const layout = tmp('layout');
    mkdirSync(tmp('link-dir'));
    const link = tmp('digest-link');
    const target = join(tmp('link-dir'), 'digest');
    symlinkSync(target, link); // dangling until the run writes the file
    const r = await nixoci(['build', '--graph', fx.graphFile, '--to', `oci:${layout}`, '--digestfile', link]);
    expect(r.code, r.stderr).toBe(0);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    const inLayout = layoutDigest(layout, 'latest');
    expect(inLayout.mediaType).toBe(OCI_MANIFEST);
    expect(readFileSync(target, 'utf8')).toBe(inLayout.digest);
  });

  it('load: the image ID that docker image inspect shows', async () => {
    const name = `${unique('load')}:v1`;
    const digestFile = tmp('load.digest');
    const refsFile = tmp('load.refs');
    try {
      const r = await nixoci([
        'load',
        '--graph',
        fx.graphFile,
        name,
        '-H',
        env.dockerHost,
        '--digestfile',
        digestFile,
        '--image-refs',
        refsFile,
      ]);
      expect(r.code, r.stderr).toBe(0);
      const id = (await docker(['image', 'inspect', '--format', '{{.Id}}', name])).stdout.trim();
      expect(id).toMatch(DIGEST);
      expect(readFileSync(digestFile, 'utf8')).toBe(id);
      expect(readFileSync(refsFile, 'utf8')).toBe(`docker-daemon:${name}@${id}\n`);
    } finally {
      await dockerRmi(name);
    }
  });

  it('a run whose last destination fails leaves existing files untouched, though the first was written', async () => {
    const layout = tmp('failed-layout');
    const digestFile = tmp('failed.digest');
    const refsFile = tmp('failed.refs');
    writeFileSync(digestFile, 'sha256:old');
    writeFileSync(refsFile, 'old refs\n');
    // no credentials anywhere (an empty home and auth file): the basic-auth registry refuses the push
    const home = tmp('empty-home');
    mkdirSync(home);
    writeFileSync(join(home, 'auth.json'), '{"auths":{}}');
    const noCreds = {
      HOME: home,
      DOCKER_CONFIG: home,
      XDG_CONFIG_HOME: home,
      XDG_RUNTIME_DIR: home,
      REGISTRY_AUTH_FILE: join(home, 'auth.json'),
    };
    const r = await nixoci(
      [
        'build',
        '--graph',
        fx.graphFile,
        '--compression',
        'gzip',
        '--to',
        `oci:${layout}`,
        '--to',
        `docker://${env.registryBasic}/${unique('denied')}:v1`,
        '--digestfile',
        digestFile,
        '--image-refs',
        refsFile,
      ],
      { env: noCreds },
    );
    expect(r.code, r.stderr).toBe(1);
    expect(existsSync(join(layout, 'index.json'))).toBe(true);
    expect(readFileSync(digestFile, 'utf8')).toBe('sha256:old');
    expect(readFileSync(refsFile, 'utf8')).toBe('old refs\n');
  });

  it('refuses before anything is read: destinations with different digests, a directory, stdout under --json', async () => {
    // a graph that does not exist: a check made after reading would fail on it instead
    const missing = tmp('no-such-graph.json');
    const layout = tmp('refused-layout');
    const archive = tmp('refused.tar');
    const digestFile = tmp('refused.digest');
    const refused = async (args: string[], message: string, hint?: string): Promise<void> => {
      const r = await nixoci(['build', '--graph', missing, ...args]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(message);
      if (hint) expect(r.stderr).toContain(hint);
      expect(r.stderr).not.toContain('    at '); // no stack trace
    };
    await refused(
      ['--to', `oci:${layout}`, '--to', `docker-archive:${archive}`, '--digestfile', digestFile],
      `--digestfile holds one digest, and the destinations get different ones: oci:${layout}:latest gets the manifest digest with uncompressed layers, docker-archive:${archive} the config digest (its image ID)`,
      'hint: run them separately, each with its own --digestfile',
    );
    await refused(
      [
        '--to',
        `oci:${layout}`,
        '--to',
        `docker://${env.registry}/${unique('refused')}:v1`,
        '--digestfile',
        digestFile,
      ],
      'with uncompressed layers, docker://',
      'hint: give --compression gzip (or zstd)',
    );
    await refused(
      ['--to', `oci:${layout}`, '--digestfile', work],
      `--digestfile ${work}: ${work} is a directory`,
    );
    await refused(
      ['--to', `oci:${layout}`, '--image-refs', '/dev/stdout', '--json'],
      '--image-refs /dev/stdout: --json prints its report on standard output',
    );
    expect(existsSync(layout)).toBe(false);
    expect(existsSync(archive)).toBe(false);
    expect(existsSync(digestFile)).toBe(false);
  });

  it('a FIFO is written into once a reader opens it, the run waiting for one', async () => {
    const layout = tmp('fifo-layout');
    const fifo = tmp('digest.fifo');
    await run('mkfifo', [fifo]);
    let read: Promise<string> | undefined;
    // the reader comes only once the run says it waits for one: the open without a reader is tried
    // again, never blocking and never failing
    const r = await spawnCli(
      ['build', '--graph', fx.graphFile, '--to', `oci:${layout}`, '--digestfile', fifo],
      'pipe',
      (text) => {
        if (!read && text.includes(`waiting for a reader of ${fifo} (--digestfile)`))
          read = readFile(fifo, 'utf8');
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(read).toBeDefined();
    expect(await read!).toBe(layoutDigest(layout, 'latest').digest);
    expect(lstatSync(fifo).isFIFO()).toBe(true);
  });

  it('a FIFO nobody reads does not hold the run: Ctrl-C ends the wait (exit 130), the FIFO stays', async () => {
    const layout = tmp('fifo-int-layout');
    const fifo = tmp('unread.fifo');
    await run('mkfifo', [fifo]);
    let sent = false;
    const r = await spawnCli(
      ['build', '--graph', fx.graphFile, '--to', `oci:${layout}`, '--digestfile', fifo],
      'pipe',
      (text, child) => {
        if (!sent && text.includes(`waiting for a reader of ${fifo}`)) sent = child.kill('SIGINT');
      },
    );
    expect(sent).toBe(true);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toContain('nixoci: interrupted');
    expect(lstatSync(fifo).isFIFO()).toBe(true);
  });

  it('/dev/stdout redirected to a file with content: the digest is appended, the content kept', async () => {
    const layout = tmp('stdout-layout');
    const out = tmp('stdout.txt');
    writeFileSync(out, 'before\n');
    const fd = openSync(out, 'a');
    let r;
    try {
      r = await spawnCli(
        ['build', '--graph', fx.graphFile, '--to', `oci:${layout}`, '-q', '--digestfile', '/dev/stdout'],
        fd,
      );
    } finally {
      closeSync(fd);
    }
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe(`before\n${layoutDigest(layout, 'latest').digest}`);
  });
});
