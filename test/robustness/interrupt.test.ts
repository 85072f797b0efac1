// Interruption: `nixoci push`, `nixoci load` and `nixoci build --to oci:` (the built CLI) killed
// with SIGINT and SIGKILL at seeded random points. SIGINT exits 130 and cancels the upload
// sessions it opened; a re-run completes without re-sending a blob the registry committed; no tag
// points at a missing blob; the engine never holds a half-loaded tag; the digest cache and the
// OCI layout never hold anything that does not match its digest.
import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, dockerRmi } from '../helpers/docker.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, fixtureClosureNix, type FixtureClosure } from '../helpers/nix.js';
import { startFaultProxy, type FaultProxy } from '../registry/fault-proxy.js';
import {
  auditRepository,
  committedBlobs,
  forward,
  openUploads,
  seededRng,
  spawnCli,
} from './robust-helpers.js';

const env = testEnv();
const SEED = 7;
const KILLS = 4; // per signal and command
const work = mkdtempSync(path.join(tmpdir(), 'nixoci-interrupt-'));
const figures = {
  interruptions: 0,
  finishedFirst: 0,
  // a SIGINT while Node itself was still starting (before bin/nixoci.js runs, on a busy machine):
  // the default action ends it, before it has done anything
  beforeStart: 0,
  reruns: 0,
  sessionsCancelled: 0,
  sessionsRaced: 0,
  blobsNotResent: 0,
  tmpCleaned: 0,
};

let fx: FixtureClosure;
let graph: string;

/** A 12 MB store path of deterministic noise (AES-CTR of zeros), added with nix-store --add. */
function bigStorePath(): string {
  const dir = path.join(work, 'big-noise');
  mkdirSync(dir);
  const c = createCipheriv('aes-128-ctr', Buffer.alloc(16, 1), Buffer.alloc(16, 2));
  writeFileSync(path.join(dir, 'noise.bin'), c.update(Buffer.alloc(12 << 20)));
  return execFileSync('nix-store', ['--add', dir], { encoding: 'utf8' }).trim();
}

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'interrupt' });
  const big = bigStorePath();
  const g = JSON.parse(readFileSync(fx.graphFile, 'utf8')) as { roots: string[]; closure: object[] };
  g.closure.push({
    path: big,
    narHash: execFileSync('nix-store', ['--query', '--hash', big], { encoding: 'utf8' }).trim(),
    narSize: Number(execFileSync('nix-store', ['--query', '--size', big], { encoding: 'utf8' })),
    references: [],
  });
  g.roots.push(big);
  graph = path.join(work, 'graph.json');
  writeFileSync(graph, JSON.stringify(g));
}, 300_000);

afterAll(() => {
  console.log(
    `[robustness] interruption: interruptions=${figures.interruptions} (finished before the signal: ${figures.finishedFirst}, signalled while Node started: ${figures.beforeStart}) ` +
      `re-runs=${figures.reruns} sessions cancelled on SIGINT=${figures.sessionsCancelled} ` +
      `(still held by the registry after a DELETE raced its aborted PATCH: ${figures.sessionsRaced}) committed blobs not re-sent=${figures.blobsNotResent} ` +
      `stale temp files cleaned=${figures.tmpCleaned} images lost/corrupted=0`,
  );
  rmSync(work, { recursive: true, force: true });
});

const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** How long an uninterrupted run takes: kill points are drawn within it. */
async function duration(args: string[], env: NodeJS.ProcessEnv = {}): Promise<number> {
  const t = Date.now();
  const r = await spawnCli(args, env).done;
  expect(r.code, r.stderr).toBe(0);
  return Date.now() - t;
}

describe('push killed with SIGINT and SIGKILL', () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    proxy = await startFaultProxy(env.registry);
    // Upload bodies at ~6 MB/s: a 12 MB layer takes a couple of seconds, a window to land in.
    proxy.fault = (req, res, seen) => {
      const upload =
        req.method === 'PATCH' || (req.method === 'PUT' && (req.url ?? '').includes('/blobs/uploads/'));
      if (!upload) return false;
      // this request's record gets the registry's status: a session closed by a PUT that the
      // registry answered 201 is closed, not left open
      const record = seen[seen.length - 1]!;
      forward(env.registry, req, res, {
        throttleBytesPerSec: 6 << 20,
        onAnswer: (status) => (record.status = status),
      });
      return true;
    };
  });
  afterAll(async () => proxy.close());

  it('exits 130 and cancels its sessions on SIGINT; a re-run re-sends nothing committed; tags stay whole', async () => {
    const rng = seededRng(SEED);
    const repo = `nixoci-test/interrupt-${Date.now().toString(36)}`;
    const cache = path.join(work, 'cache');
    const base = await duration([
      'push',
      '--graph',
      graph,
      '--no-cache',
      '--compression-level',
      '9',
      `${proxy.host}/${repo}-base:t`,
    ]);
    for (let k = 0; k < 2 * KILLS; k++) {
      const signal = k % 2 === 0 ? 'SIGINT' : 'SIGKILL';
      // A new gzip level each round: new blobs, so there is something to upload to interrupt.
      const args = [
        'push',
        '--graph',
        graph,
        '--cache-dir',
        cache,
        '--compression-level',
        String(1 + k),
        '--json',
        `${proxy.host}/${repo}:t`,
      ];
      const from = proxy.seen.length;
      // What the interrupted run commits is what the re-run must not send again. Blobs from earlier
      // rounds do not count: another level's cache entry does not name them, and a blob that
      // deflates to the same bytes at two levels (incompressible data) is only found by reading it.
      const earlier = committedBlobs(repo);
      const run = spawnCli(args);
      await wait(rng.int(150, base * 0.9));
      run.child.kill(signal);
      const r = await run.done;
      figures.interruptions++;
      if (r.code === 0) figures.finishedFirst++;
      else if (signal === 'SIGINT' && r.signal === 'SIGINT') {
        expect(proxy.seen.slice(from), 'ended by SIGINT itself after it had begun').toEqual([]);
        figures.beforeStart++;
      } else if (signal === 'SIGINT') {
        expect(r.code, r.stderr).toBe(130);
        expect(r.stderr).toMatch(/^nixoci: (interrupted|error: .*interrupted.*)\n/);
        await wait(300);
        // Every session this run opened was closed (PUT) or cancelled (DELETE).
        const mine = proxy.seen.slice(from);
        const opened = mine
          .filter((s) => s.method === 'POST' && s.status === 202 && s.location)
          .map((s) => new URL(s.location!, 'http://x').pathname);
        for (const o of opened) {
          // Cancelled (DELETE sent) or completed. The registry may still answer a DELETE that
          // races the PATCH it is aborting with 404; such sessions expire there (counted below).
          const closed = mine.some(
            (s) =>
              s.path.startsWith(o) && (s.method === 'DELETE' || (s.method === 'PUT' && s.status === 201)),
          );
          const trail = mine.filter((s) => s.path.startsWith(o)).map((s) => `${s.method} ${s.status}`);
          expect(closed, `session ${o} left open: ${trail.join(', ')}`).toBe(true);
          if (openUploads(repo).includes(path.basename(o))) figures.sessionsRaced++;
        }
        figures.sessionsCancelled += mine.filter((s) => s.method === 'DELETE').length;
      } else expect(r.signal).toBe('SIGKILL');
      expect((await auditRepository(env.registry, repo)).problems).toEqual([]);

      // The re-run: whatever the registry committed is skipped, not sent again.
      const committed = new Set([...committedBlobs(repo)].filter((b) => !earlier.has(b)));
      const again = spawnCli(args);
      const a = await again.done;
      expect(a.code, a.stderr).toBe(0);
      figures.reruns++;
      const report = JSON.parse(a.stdout) as {
        layers: { digest: string; action: string; bytesSent: number }[];
      };
      for (const l of report.layers) {
        if (!committed.has(l.digest)) continue;
        expect(['skipped', 'reused', 'mounted'], `${l.digest} re-sent`).toContain(l.action);
        expect(l.bytesSent).toBe(0);
        figures.blobsNotResent++;
      }
      const audit = await auditRepository(env.registry, repo);
      expect(audit.problems).toEqual([]);
      expect(audit.tags).toEqual(['t']);
    }
    // The digest cache the killed runs shared: every entry parses and matches what was pushed.
    const entries = readdirSync(path.join(cache, 'v1'), { recursive: true, encoding: 'utf8' }).filter((f) =>
      f.endsWith('.json'),
    );
    expect(entries.length).toBeGreaterThan(0);
    for (const f of entries) {
      const e = JSON.parse(readFileSync(path.join(cache, 'v1', f), 'utf8')) as { digest: string };
      expect(e.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    }
  }, 600_000);
});

describe('push interrupted while the registry does not answer the cancelling DELETE', () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    proxy = await startFaultProxy(env.registry);
    proxy.fault = (req, res) => {
      if (req.method === 'DELETE') return true; // never answered
      const upload =
        req.method === 'PATCH' || (req.method === 'PUT' && (req.url ?? '').includes('/blobs/uploads/'));
      if (!upload) return false;
      forward(env.registry, req, res, { throttleBytesPerSec: 2 << 20 });
      return true;
    };
  });
  afterAll(async () => proxy.close());

  // The bounds below are far above the CLI's own (CANCEL_TIMEOUT_MS, 5 s) for a busy machine, and
  // far below the 300 s of --timeout that the old code waited out.
  it('ends within seconds of Ctrl-C, not after the DELETE has waited out --timeout', async () => {
    const run = spawnCli(['push', '--graph', graph, '--no-cache', `${proxy.host}/nixoci-test/held-delete:t`]);
    for (let t = Date.now(); !proxy.seen.some((s) => s.method === 'PATCH') && Date.now() - t < 60_000;)
      await wait(50);
    run.child.kill('SIGINT');
    const ended = await Promise.race([run.done, wait(100_000).then(() => undefined)]);
    if (!ended) run.child.kill('SIGKILL');
    expect(ended, 'still running 100 s after SIGINT').toBeDefined();
    expect(ended!.code, ended!.stderr).toBe(130);
    expect(ended!.stderr).toBe('nixoci: interrupted\n');
    expect(proxy.seen.some((s) => s.method === 'DELETE')).toBe(true);
  }, 240_000);

  it('ends at once on a second signal of another kind (SIGTERM after SIGINT)', async () => {
    const from = proxy.seen.length;
    const mine = (method: string): boolean => proxy.seen.slice(from).some((s) => s.method === method);
    const run = spawnCli([
      'push',
      '--graph',
      graph,
      '--no-cache',
      `${proxy.host}/nixoci-test/held-delete-2:t`,
    ]);
    for (let t = Date.now(); !mine('PATCH') && Date.now() - t < 60_000;) await wait(50);
    run.child.kill('SIGINT');
    // winding down: waiting for the DELETE the registry never answers
    for (let t = Date.now(); !mine('DELETE') && Date.now() - t < 90_000;) await wait(20);
    run.child.kill('SIGTERM');
    const ended = await Promise.race([run.done, wait(100_000).then(() => undefined)]);
    if (!ended) run.child.kill('SIGKILL');
    // ended by the SIGTERM itself, not by the winding down after the SIGINT (exit 130)
    expect([ended?.code, ended?.signal]).toEqual([null, 'SIGTERM']);
  }, 300_000);
});

describe('the digest cache', () => {
  it('discards truncated, garbage and wrong entries instead of trusting them', async () => {
    const cache = path.join(work, 'cache-garbage');
    const build = async (out: string, extra: string[]) => {
      const r = await spawnCli(['build', '--graph', graph, '--to', `oci:${out}:t`, '--json', ...extra]).done;
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { manifestDigest: string; layers: { digest: string }[] };
    };
    const clean = await build(path.join(work, 'oci-clean'), ['--no-cache']);
    await build(path.join(work, 'oci-warm'), ['--cache-dir', cache]);
    const files = readdirSync(path.join(cache, 'v1'), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.json'))
      .map((f) => path.join(cache, 'v1', f));
    expect(files.length).toBe(clean.layers.length);
    // Truncated JSON, binary garbage, an empty file, valid JSON of the wrong shape; and a
    // well-formed entry with wrong digests (it can only cost a re-hash, never a wrong image).
    const spoilers = [
      (t: string) => t.slice(0, t.length / 2),
      () => '\u0000\u00ff garbage',
      () => '',
      () => '{"diffId": 42}',
      (t: string) => t.replace(/[0-9a-f]{64}/g, 'f'.repeat(64)),
    ];
    files.forEach((f, i) => writeFileSync(f, spoilers[i % spoilers.length]!(readFileSync(f, 'utf8'))));
    const out = path.join(work, 'oci-spoiled');
    const r = await build(out, ['--cache-dir', cache]);
    expect(r.manifestDigest).toBe(clean.manifestDigest);
    // Every blob in the layout matches its name.
    for (const b of readdirSync(path.join(out, 'blobs', 'sha256')))
      expect(
        createHash('sha256')
          .update(readFileSync(path.join(out, 'blobs', 'sha256', b)))
          .digest('hex'),
      ).toBe(b);
  });
});

describe('oci: layout killed with SIGKILL', () => {
  it('never holds a blob whose name does not match its content; stale temp files are cleaned', async () => {
    const rng = seededRng(SEED + 1);
    const out = path.join(work, 'oci-killed');
    const args = [
      'build',
      '--graph',
      graph,
      '--compression',
      'gzip',
      '--compression-level',
      '9',
      '--no-cache',
      '--to',
      `oci:${out}:t`,
    ];
    let leftovers = 0;
    const base = await duration(args);
    rmSync(out, { recursive: true });
    for (let k = 0; k < 2 * KILLS; k++) {
      const run = spawnCli(args);
      await wait(rng.int(100, base * 0.9));
      run.child.kill('SIGKILL');
      const r = await run.done;
      figures.interruptions++;
      if (r.code === 0) figures.finishedFirst++;
      const dir = path.join(out, 'blobs', 'sha256');
      if (!existsSync(dir)) continue;
      for (const b of readdirSync(dir)) {
        if (b.startsWith('.tmp-') || b.endsWith('.tmp')) {
          leftovers++;
          continue;
        }
        expect(
          createHash('sha256')
            .update(readFileSync(path.join(dir, b)))
            .digest('hex'),
          b,
        ).toBe(b);
      }
      if (existsSync(path.join(out, 'index.json'))) {
        const index = JSON.parse(readFileSync(path.join(out, 'index.json'), 'utf8')) as {
          manifests: { digest: string }[];
        };
        for (const m of index.manifests) expect(existsSync(path.join(dir, m.digest.slice(7)))).toBe(true);
      }
    }
    const r = await spawnCli(args).done;
    expect(r.code, r.stderr).toBe(0);
    const temps = readdirSync(path.join(out, 'blobs', 'sha256')).filter(
      (b) => b.startsWith('.tmp-') || b.endsWith('.tmp'),
    );
    expect(temps).toEqual([]);
    figures.tmpCleaned += leftovers;
    execFileSync('umoci', ['stat', '--image', `${out}:t`]);
  }, 300_000);
});

describe('oci: layout that holds images already, interrupted with SIGINT', () => {
  it('leaves no temp file, blobs that match their names and index.json whole, at each stage', async () => {
    // Three 32 MiB store paths of noise at gzip -9 (about a second each): the two biggest layers are
    // written at once while the others wait their turn.
    const noise = [1, 2, 3].map((k) => {
      const dir = path.join(work, `layout-noise-${k}`);
      mkdirSync(dir);
      const c = createCipheriv('aes-128-ctr', Buffer.alloc(16, 10 + k), Buffer.alloc(16, 2));
      writeFileSync(path.join(dir, 'noise.bin'), c.update(Buffer.alloc((32 << 20) + k)));
      return execFileSync('nix-store', ['--add', dir], { encoding: 'utf8' }).trim();
    });
    const g = JSON.parse(readFileSync(fx.graphFile, 'utf8')) as { roots: string[]; closure: object[] };
    for (const p of noise) {
      g.closure.push({
        path: p,
        narHash: execFileSync('nix-store', ['--query', '--hash', p], { encoding: 'utf8' }).trim(),
        narSize: Number(execFileSync('nix-store', ['--query', '--size', p], { encoding: 'utf8' })),
        references: [],
      });
      g.roots.push(p);
    }
    const bigGraph = path.join(work, 'layout-graph.json');
    writeFileSync(bigGraph, JSON.stringify(g));
    const out = path.join(work, 'oci-kept');
    const blobs = path.join(out, 'blobs', 'sha256');
    // --no-cache: every layer is written again by every run, over the blob of the run before.
    const args = (tag: string, graphFile = bigGraph): string[] => [
      'build',
      '--graph',
      graphFile,
      '--compression',
      'gzip',
      '--compression-level',
      '9',
      '--no-cache',
      '--to',
      `oci:${out}:${tag}`,
    ];
    for (const [tag, file] of [
      ['keep', fx.graphFile],
      ['t', bigGraph],
    ] as const) {
      const r = await spawnCli(args(tag, file)).done;
      expect(r.code, r.stderr).toBe(0);
    }
    const tags = (): Record<string, string> => {
      const index = JSON.parse(readFileSync(path.join(out, 'index.json'), 'utf8')) as {
        manifests: { digest: string; annotations: Record<string, string> }[];
      };
      return Object.fromEntries(
        index.manifests.map((m) => [m.annotations['org.opencontainers.image.ref.name'], m.digest]),
      );
    };
    const before = tags();
    // Stages, by the temp files the run has made (`.tmp-PID-…`): 1 its marker (made as it starts),
    // 3 the marker and two layers being written at once, 4 a layer done and the next one begun.
    for (const stage of [1, 3, 4]) {
      const run = spawnCli(args('t'));
      const pid = run.child.pid!;
      const seen = new Set<string>();
      let ended = false;
      void run.done.then(() => (ended = true));
      while (seen.size < stage && !ended) {
        if (existsSync(blobs))
          for (const n of readdirSync(blobs)) if (n.startsWith(`.tmp-${pid}-`)) seen.add(n);
        await wait(5);
      }
      expect(ended, `the run ended before stage ${stage}`).toBe(false);
      run.child.kill('SIGINT');
      const r = await run.done;
      figures.interruptions++;
      expect(r.code, r.stderr).toBe(130);
      expect(r.stderr).toBe('nixoci: interrupted\n');
      const left = [...readdirSync(out), ...readdirSync(blobs)].filter(
        (n) => n.startsWith('.tmp-') || n.endsWith('.tmp') || n.endsWith('.lock'),
      );
      expect(left, `after SIGINT at stage ${stage}`).toEqual([]);
      for (const b of readdirSync(blobs))
        expect(
          createHash('sha256')
            .update(readFileSync(path.join(blobs, b)))
            .digest('hex'),
          b,
        ).toBe(b);
      // The tags as they were: an interrupted run tags nothing.
      expect(tags()).toEqual(before);
      for (const t of Object.keys(before)) execFileSync('umoci', ['stat', '--image', `${out}:${t}`]);
    }
  }, 300_000);
});

describe('load killed with SIGINT and SIGKILL', () => {
  it('never leaves a half-loaded tag in the engine', async () => {
    const rng = seededRng(SEED + 2);
    const name = `nixoci-interrupt-load`;
    const dockerEnv = { DOCKER_HOST: env.dockerHost };
    const expectWhole = async (): Promise<boolean> => {
      const r = await docker(['image', 'inspect', '--format', '{{len .RootFS.Layers}}', `${name}:t`], {
        check: false,
      });
      if (r.code !== 0) return false;
      expect(Number(r.stdout.trim())).toBe(6);
      return true;
    };
    let loaded = 0;
    await dockerRmi(`${name}:t`);
    await docker(['image', 'prune', '-f'], { check: false });
    const base = await duration(['load', '--graph', graph, '--no-cache', `${name}:t`], dockerEnv);
    for (let k = 0; k < 2 * KILLS; k++) {
      const signal = k % 2 === 0 ? 'SIGINT' : 'SIGKILL';
      await dockerRmi(`${name}:t`);
      // Engine dropped the layers too (no other image holds them): the whole archive is sent.
      await docker(['image', 'prune', '-f'], { check: false });
      const run = spawnCli(
        ['load', '--graph', graph, '--entrypoint', `${fx.app}/bin/app`, '--no-cache', `${name}:t`],
        dockerEnv,
      );
      await wait(rng.int(100, base * 0.9));
      run.child.kill(signal);
      const r = await run.done;
      figures.interruptions++;
      if (r.code === 0) figures.finishedFirst++;
      else if (signal === 'SIGINT' && r.signal === 'SIGINT' && r.stderr === '') figures.beforeStart++;
      else if (signal === 'SIGINT') expect(r.code, r.stderr).toBe(130);
      // Either no tag, or the whole image.
      await wait(200);
      if (await expectWhole()) loaded++;
    }
    const r = await spawnCli(
      ['load', '--graph', graph, '--entrypoint', `${fx.app}/bin/app`, `${name}:t`],
      dockerEnv,
    ).done;
    expect(r.code, r.stderr).toBe(0);
    expect(await expectWhole()).toBe(true);
    const { stdout } = await docker(['run', '--rm', '--network', 'none', `${name}:t`]);
    expect(stdout).toContain('fixture app interrupt');
    await dockerRmi(`${name}:t`);
    console.log(
      `[robustness] load interrupted ${2 * KILLS} times; the tag was whole after ${loaded} of them, absent after the rest`,
    );
  }, 300_000);
});

describe('a Nix build stopped by a signal', () => {
  // The signal reaches nixoci only (a CI runner cancelling a job, `kill`), not its process group as
  // Ctrl-C on a terminal does: nixoci must stop nix-build itself. SIGHUP (the terminal or SSH session
  // closed) stops the run as the others do, then ends the process by SIGHUP.
  it.each(['SIGINT', 'SIGTERM', 'SIGHUP'] as const)(
    '%s stops nix-build at once',
    async (signal) => {
      const dir = mkdtempSync(path.join(work, 'nix-stopped-'));
      // A derivation that sleeps, new on every run so that Nix has to build it.
      writeFileSync(
        path.join(dir, 'slow.nix'),
        `let fx = import ${fixtureClosureNix} { }; in derivation {
        name = "slow-${signal}-${Date.now().toString(36)}"; system = builtins.currentSystem;
        builder = "\${fx.busybox}/bin/sh";
        args = [ "-c" "\${fx.busybox}/bin/sleep 100000; \${fx.busybox}/bin/mkdir $out" ];
      }`,
      );
      const run = spawnCli(['build', '--file', path.join(dir, 'slow.nix'), '--to', `oci:${dir}/oci:t`]);
      const childrenOf = (pid: number): number[] => {
        try {
          return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
            .split('\n')
            .filter((l) => l.trim() !== '')
            .map(Number);
        } catch {
          return []; // ps exits 1 when it lists nothing
        }
      };
      // Wait for nix-build (the CLI's child) to have started the builder (its child).
      let nixBuild: number | undefined;
      for (let t = Date.now(); nixBuild === undefined && Date.now() - t < 60_000; await wait(100))
        nixBuild = childrenOf(run.child.pid!).find((c) => childrenOf(c).length > 0);
      expect(nixBuild).toBeDefined();
      run.child.kill(signal);
      // The build sleeps for a day: a nixoci that waited for it would still be running after a
      // bound that is generous for a busy machine.
      const r = await Promise.race([run.done, wait(90_000).then(() => undefined)]);
      if (!r) {
        run.child.kill('SIGKILL');
        try {
          process.kill(nixBuild!, 'SIGKILL');
        } catch {
          // gone already
        }
      }
      expect(r, 'waited for the Nix build').toBeDefined();
      expect(r!.stderr).toBe('nixoci: interrupted\n');
      if (signal === 'SIGHUP') expect(r!.signal).toBe('SIGHUP');
      else expect(r!.code).toBe(130);
      const alive = (pid: number): boolean => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      for (let w = Date.now(); alive(nixBuild!) && Date.now() - w < 90_000;) await wait(100);
      expect(alive(nixBuild!), 'nix-build left running').toBe(false);
      expect(existsSync(path.join(dir, 'oci'))).toBe(false);
    },
    300_000,
  );
});
