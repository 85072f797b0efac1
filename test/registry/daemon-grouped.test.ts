// A load in several archives (Docker's classic store, big loads): the engine imports one group of
// layers while the next streams. Against the real dockerd, with the threshold lowered so that the
// small fixture closure goes in several archives; the built CLI (layer workers, as users run it).
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import {
  createServer as createHttpServer,
  request as httpRequest,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOAD_STEP_LABEL, loadGroups } from '../../src/registry/docker-daemon-target.js';
import { cliBin, nixoci } from '../helpers/cli.js';
import { docker, dockerRmi, dockerRunOutput } from '../helpers/docker.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { tempDir } from './daemon-helpers.js';

const MiB = 1 << 20;

describe('loadGroups', () => {
  it('keeps a small load in one archive', () => {
    expect(loadGroups([10 * MiB, 20 * MiB, 1000], 0, 128 * MiB)).toEqual([[0, 3]]);
    expect(loadGroups([200 * MiB, 20 * MiB, 1000], 1, 128 * MiB)).toEqual([[1, 3]]);
  });

  it('splits a big one into a small first group and bigger ones, covering every layer once', () => {
    const sizes = [2, 40, 40, 40, 40, 147, 105, 73, 52, 53, 53, 53, 53, 53, 53, 20, 20, 20, 0.03].map((m) =>
      Math.round(m * MiB),
    );
    const total = sizes.reduce((a, b) => a + b, 0);
    const groups = loadGroups(sizes, 0, 128 * MiB);
    expect(groups.length).toBeGreaterThanOrEqual(4);
    expect(groups.length).toBeLessThanOrEqual(8);
    // contiguous, in order, from the first layer to the last
    expect(groups[0]![0]).toBe(0);
    expect(groups.at(-1)![1]).toBe(sizes.length);
    for (let g = 1; g < groups.length; g++) expect(groups[g]![0]).toBe(groups[g - 1]![1]);
    const bytes = groups.map(([s, e]) => sizes.slice(s, e).reduce((a, b) => a + b, 0));
    // the first group is the smallest share, so that the engine starts importing early
    expect(bytes[0]!).toBeLessThan(total / 4);
    expect(bytes[0]!).toBeLessThanOrEqual(Math.min(...bytes.slice(1, -1)));
    // no group of a few bytes at the end: the app layer goes with the ones before it
    expect(groups.at(-1)![1] - groups.at(-1)![0]).toBeGreaterThan(1);
  });

  it('starts after the layers the engine has', () => {
    const groups = loadGroups([100 * MiB, 100 * MiB, 100 * MiB, 100 * MiB, 100 * MiB], 2, 128 * MiB);
    expect(groups[0]![0]).toBe(2);
    expect(groups.at(-1)![1]).toBe(5);
    expect(groups.length).toBeGreaterThan(1);
  });
});

interface JsonLayer {
  action: string;
  bytesSent: number;
  diffId: string;
}

const run = randomBytes(4).toString('hex');
const stepImages = async (): Promise<string[]> =>
  (await docker(['images', '-a', '-q', '--filter', `label=${LOAD_STEP_LABEL}`])).stdout
    .split('\n')
    .filter(Boolean);
/** Step images that are there now and were not at `before` (an earlier run may have left some). */
const newStepImages = async (before: readonly string[]): Promise<string[]> =>
  (await stepImages()).filter((id) => !before.includes(id));

describe('nixoci load in several archives (real dockerd)', () => {
  const cacheDir = tempDir('nixoci-grouped-cache-');
  let fx: FixtureClosure;
  const env = (): NodeJS.ProcessEnv => ({ DOCKER_HOST: testEnv().dockerHost, NIXOCI_LOAD_GROUP_BYTES: '1' });
  const load = (name: string, host?: string, cache = cacheDir) =>
    nixoci(
      [
        'load',
        '--graph',
        fx.graphFile,
        ...(host ? ['--host', host] : []),
        name,
        '--cache-dir',
        cache,
        '--entrypoint',
        `${fx.app}/bin/app`,
        '--json',
        '-v',
      ],
      { env: env() },
    );

  beforeAll(async () => {
    fx = await buildFixtureClosure({ tag: `grouped-${run}` });
  });

  afterAll(async () => {
    const r = await docker(['image', 'ls', '--format', '{{.Repository}}:{{.Tag}}'], { check: false });
    await dockerRmi(...r.stdout.split('\n').filter((l) => l.includes(run)));
  });

  it('loads an image that runs, with the diffIDs it reports, and leaves no step image behind', async () => {
    const before = await stepImages();
    for (const [name, cache] of [
      // an empty cache: every layer is hashed on its way to the engine
      [`nixoci-grouped-${run}:cold`, cacheDir],
      // the cache knows every digest now; with the first image removed, every layer is sent again,
      // counted and not hashed, and the engine checks each diffID against the config
      [`nixoci-grouped-${run}:warm`, cacheDir],
    ] as const) {
      if (name.endsWith(':warm')) await dockerRmi(`nixoci-grouped-${run}:cold`);
      const r = await load(name, undefined, cache);
      expect(r.code, r.stderr).toBe(0);
      const archives = /loading in (\d+) archives/.exec(r.stderr);
      expect(archives, r.stderr).not.toBeNull();
      expect(Number(archives![1])).toBeGreaterThanOrEqual(2);
      const report = JSON.parse(r.stdout) as { layers: JsonLayer[] };
      expect(report.layers.every((l) => l.action === 'sent' && l.bytesSent > 0)).toBe(true);
      const inspect = await docker(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', name]);
      expect(JSON.parse(inspect.stdout)).toEqual(report.layers.map((l) => l.diffId));
      expect(await dockerRunOutput(name)).toContain(`fixture app grouped-${run}`);
      expect(await newStepImages(before)).toEqual([]);
    }
  });

  it('fails with the engine’s message when a later archive is refused, removing the steps it made', async () => {
    const before = await stepImages();
    // A proxy in front of the real engine refuses the second POST /images/load; the first goes
    // through and leaves a step image, which nixoci must remove.
    const upstream = testEnv().dockerHost.replace(/^unix:\/\//, '');
    const sock = join(tempDir('nixoci-grouped-proxy-'), 'docker.sock');
    let loads = 0;
    const proxy = createHttpServer((req, res) => {
      if (/\/images\/load/.test(req.url ?? '') && ++loads === 2) {
        req.resume();
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: 'injected failure of the second archive' }));
        return;
      }
      const up = httpRequest(
        { socketPath: upstream, method: req.method, path: req.url, headers: req.headers },
        (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        },
      );
      req.pipe(up);
    });
    await new Promise<void>((resolve) => proxy.listen(sock, resolve));
    try {
      const name = `nixoci-grouped-${run}:refused`;
      const r = await load(name, `unix://${sock}`, tempDir('nixoci-grouped-refused-'));
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/rejected the image: injected failure of the second archive/);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(loads).toBeGreaterThanOrEqual(2);
      expect(await newStepImages(before)).toEqual([]);
      expect((await docker(['image', 'inspect', name], { check: false })).code).not.toBe(0);
    } finally {
      proxy.close();
    }
  });
  it('waits, when interrupted, for the step the engine is importing, and removes it', async () => {
    const before = await stepImages();
    // The engine imports an archive it has received whether or not the client is still there. A
    // proxy holds the engine's answer to the first (step) load for a moment; nixoci is interrupted
    // as soon as that archive is all out, and must wait for the answer and remove the step image.
    const upstream = testEnv().dockerHost.replace(/^unix:\/\//, '');
    const sock = join(tempDir('nixoci-grouped-int-'), 'docker.sock');
    let loads = 0;
    let firstSent!: () => void;
    const sent = new Promise<void>((resolve) => (firstSent = resolve));
    let engineDone!: () => void;
    const engineAnswered = new Promise<void>((resolve) => (engineDone = resolve));
    const proxy = createHttpServer((req, res) => {
      const n = /\/images\/load/.test(req.url ?? '') ? ++loads : 0;
      const up = httpRequest(
        { socketPath: upstream, method: req.method, path: req.url, headers: req.headers },
        (r) => {
          if (n !== 1) {
            res.writeHead(r.statusCode ?? 502, r.headers);
            r.pipe(res);
            return;
          }
          // The engine's whole answer (it has made the step image by then), passed on 1.5 s later.
          const body: Buffer[] = [];
          r.on('data', (c: Buffer) => body.push(c));
          r.on('end', () => {
            engineDone();
            setTimeout(() => {
              res.writeHead(r.statusCode ?? 502, r.headers);
              res.end(Buffer.concat(body));
            }, 1500);
          });
        },
      );
      if (n === 1) req.on('end', () => firstSent());
      req.pipe(up);
    });
    await new Promise<void>((resolve) => proxy.listen(sock, resolve));
    try {
      const name = `nixoci-grouped-${run}:interrupted`;
      const child = spawn(
        cliBin,
        [
          'load',
          '--graph',
          fx.graphFile,
          '--host',
          `unix://${sock}`,
          name,
          '--cache-dir',
          tempDir('nixoci-grouped-int-cache-'),
          '--entrypoint',
          `${fx.app}/bin/app`,
        ],
        { env: { ...process.env, NIXOCI_LOAD_GROUP_BYTES: '1' } },
      );
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      await Promise.race([sent, exited]);
      child.kill('SIGINT');
      expect(await exited, stderr).toBe(130);
      expect(stderr).toMatch(/^nixoci: interrupted/m);
      expect(loads).toBeGreaterThanOrEqual(1);
      // the engine has finished that load (so a step image made by it exists, unless removed)
      await engineAnswered;
      expect(await newStepImages(before)).toEqual([]);
      expect((await docker(['image', 'inspect', name], { check: false })).code).not.toBe(0);
    } finally {
      proxy.close();
    }
  });

  it('keeps the steps of two loads of one image at once apart: one failing does not break the other', async () => {
    // Two runs load the same image (two CI jobs, two terminals). Run B has loaded its step and is
    // about to send its last archive, which names the step's layers without carrying them, when
    // run A fails after its own step: A removes its step image, which must not be B's.
    const upstream = testEnv().dockerHost.replace(/^unix:\/\//, '');
    const forward = (req: IncomingMessage, res: ServerResponse, onEnd?: () => void): void => {
      const up = httpRequest(
        { socketPath: upstream, method: req.method, path: req.url, headers: req.headers },
        (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.on('end', () => onEnd?.());
          r.pipe(res);
        },
      );
      req.pipe(up);
    };
    const dir = tempDir('nixoci-grouped-two-');
    let bLoads = 0;
    let bStepLoaded!: () => void;
    const bStep = new Promise<void>((resolve) => (bStepLoaded = resolve));
    let aDone!: () => void;
    const aFinished = new Promise<void>((resolve) => (aDone = resolve));
    // B's proxy holds B's second archive until A has finished.
    const proxyB = createHttpServer((req, res) => {
      if (!/\/images\/load/.test(req.url ?? '')) return forward(req, res);
      if (++bLoads === 1) return forward(req, res, bStepLoaded);
      void aFinished.then(() => forward(req, res));
    });
    // A's proxy refuses A's second archive, after A's step went through.
    let aLoads = 0;
    const proxyA = createHttpServer((req, res) => {
      if (/\/images\/load/.test(req.url ?? '') && ++aLoads === 2) {
        req.resume();
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: 'injected failure of run A' }));
        return;
      }
      forward(req, res);
    });
    const [sockA, sockB] = [join(dir, 'a.sock'), join(dir, 'b.sock')];
    await new Promise<void>((resolve) => proxyA.listen(sockA, resolve));
    await new Promise<void>((resolve) => proxyB.listen(sockB, resolve));
    // Two store paths of this run only (a step of shared layers, busybox, would keep them in the
    // engine through other images): whichever comes first, every step holds a layer no other image has.
    const noise = join(dir, 'noise');
    const bin = join(dir, 'bin');
    mkdirSync(noise);
    mkdirSync(join(bin, 'bin'), { recursive: true });
    writeFileSync(join(noise, 'salt'), `two-${run}\n`);
    writeFileSync(join(noise, 'data'), randomBytes(1 << 20));
    copyFileSync(
      join(
        fx.paths.find((p) => p.endsWith('-busybox'))!,
        'bin',
        'busybox',
      ),
      join(bin, 'bin', 'busybox'),
    );
    chmodSync(join(bin, 'bin', 'busybox'), 0o555);
    writeFileSync(join(bin, 'salt'), `two-${run}\n`);
    const [noisePath, binPath] = [noise, bin].map((d) =>
      execFileSync('nix-store', ['--add', d], { encoding: 'utf8' }).trim(),
    );
    const loadTwo = (name: string, sock: string) =>
      nixoci(
        [
          'load',
          '--path',
          noisePath!,
          '--path',
          binPath!,
          '--host',
          `unix://${sock}`,
          name,
          '--cache-dir',
          tempDir('nixoci-grouped-two-cache-'),
          '--entrypoint',
          `${binPath}/bin/busybox`,
          '--cmd',
          `cat ${noisePath}/salt`,
          '-v',
        ],
        { env: env() },
      );
    try {
      const nameB = `nixoci-grouped-${run}:two-b`;
      const b = loadTwo(nameB, sockB);
      await bStep;
      const a = await loadTwo(`nixoci-grouped-${run}:two-a`, sockA);
      expect(a.stderr).toMatch(/injected failure of run A/);
      expect(a.code).toBe(1);
      aDone();
      const rb = await b;
      expect(rb.code, rb.stderr).toBe(0);
      expect(rb.stderr).toMatch(/loading in 2 archives/);
      expect(await dockerRunOutput(nameB)).toContain(`two-${run}`);
    } finally {
      aDone();
      proxyA.close();
      proxyB.close();
    }
  });
});
