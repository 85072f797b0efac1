// The digest cache (src/layer/cache.ts) in the places users put it: a read-only volume (a CI cache
// mounted read-only, here a read-only bind mount made with mount(8), as root), and where
// XDG_CACHE_HOME says.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliBin, nixoci, nixociJson } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { uniqueRepo, verifyPushed } from '../registry/push-helpers.js';

const work = mkdtempSync(path.join(tmpdir(), 'nixoci-cache-'));
let fx: FixtureClosure;

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'cache' });
}, 600_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The entry files of a cache directory. */
function entries(cache: string): string[] {
  return readdirSync(path.join(cache, 'v1'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.json'))
    .map((f) => path.join(cache, 'v1', f));
}

describe('the digest cache', () => {
  it('on a read-only filesystem, a bad entry is a miss: build and inspect still succeed', async () => {
    const src = path.join(work, 'cache-src');
    const ro = path.join(work, 'cache-ro');
    mkdirSync(ro);
    const clean = await nixociJson<{ manifestDigest: string }>([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `oci:${path.join(work, 'clean')}`,
      '--cache-dir',
      src,
    ]);
    for (const f of entries(src)) writeFileSync(f, 'garbage');
    execFileSync('mount', ['--bind', src, ro]);
    try {
      execFileSync('mount', ['-o', 'remount,ro,bind', ro]);
      const r = await nixociJson<{ manifestDigest: string }>([
        'build',
        '--graph',
        fx.graphFile,
        '--to',
        `oci:${path.join(work, 'from-ro')}`,
        '--cache-dir',
        ro,
      ]);
      expect(r.manifestDigest).toBe(clean.manifestDigest);
      const i = await nixoci(['inspect', '--graph', fx.graphFile, '--cache-dir', ro]);
      expect(i.code, i.stderr).toBe(0);
      // Nothing could be removed or written there.
      expect(entries(ro).length).toBe(entries(src).length);
    } finally {
      execFileSync('umount', [ro]);
    }
  });

  it('takes an entry that is a FIFO or a device for a miss, instead of blocking on it for ever', async () => {
    const cache = path.join(work, 'cache-fifo');
    const clean = await nixociJson<{ manifestDigest: string }>([
      'build',
      '--graph',
      fx.graphFile,
      '--to',
      `oci:${path.join(work, 'fifo-clean')}`,
      '--cache-dir',
      cache,
    ]);
    const [fifo, device, ...rest] = entries(cache);
    expect(rest.length).toBeGreaterThan(0);
    rmSync(fifo!);
    execFileSync('mkfifo', [fifo!]);
    rmSync(device!);
    symlinkSync('/dev/zero', device!);
    // A synchronous read of a FIFO nobody writes to cannot be interrupted, not even by SIGTERM.
    const r = spawnSync(
      cliBin,
      [
        'build',
        '--graph',
        fx.graphFile,
        '--to',
        `oci:${path.join(work, 'fifo-out')}`,
        '--cache-dir',
        cache,
        '--json',
      ],
      { encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL' },
    );
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect((JSON.parse(r.stdout) as { manifestDigest: string }).manifestDigest).toBe(clean.manifestDigest);
    // The two were made again and written in their place.
    expect(entries(cache).length).toBe(rest.length + 2);
    expect(lstatSync(fifo!).isFile() && lstatSync(device!).isFile()).toBe(true);
  });

  it('fails in one line and drops the entry when it gives a docker-archive a wrong tar size', async () => {
    const cache = path.join(work, 'cache-size');
    const archive = path.join(work, 'size.tar');
    const build = () =>
      nixoci(['build', '--graph', fx.graphFile, '--to', `docker-archive:${archive}`, '--cache-dir', cache]);
    const clean = await build();
    expect(clean.code, clean.stderr).toBe(0);
    const good = readFileSync(archive);
    // The biggest layer (made by a layer worker) and the smallest (made here) said to be 512 bytes
    // longer: the archive's header announced that size, then the layer was shorter. Each run failed
    // with "internal: tar size … != planned …", the same every time, until the cache was removed.
    const sized = entries(cache)
      .map((f) => ({ f, e: JSON.parse(readFileSync(f, 'utf8')) as { tarSize: number } }))
      .sort((a, b) => a.e.tarSize - b.e.tarSize);
    for (const { f, e } of [sized[0]!, sized.at(-1)!])
      writeFileSync(f, JSON.stringify({ ...e, size: e.tarSize + 512, tarSize: e.tarSize + 512 }));
    for (let run = 0; run < 2; run++) {
      const r = await build();
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /^nixoci: error: the digest cache was wrong about the layer of \/nix\/store\/\S+: its tar is \d+ bytes, not \d+\nhint: the wrong entry is gone: run the command again\n$/,
      );
    }
    const r = await build();
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(archive).equals(good)).toBe(true);
  });

  it('fails in one line and drops the entry when a registry holds another size under its digest', async () => {
    const cache = path.join(work, 'cache-blob-size');
    const repo = uniqueRepo('cache-size');
    const push = (tag: string) =>
      nixoci([
        'push',
        '--graph',
        fx.graphFile,
        `docker://${testEnv().registry}/${repo}:${tag}`,
        '--cache-dir',
        cache,
      ]);
    const first = await push('a');
    expect(first.code, first.stderr).toBe(0);
    // A gzip entry whose size was changed: the blob is in the repository (HEAD finds it under its
    // digest), and a manifest with the cached size was pushed with exit 0; pulls then refuse it.
    const [f] = entries(cache).filter((e) => readFileSync(e, 'utf8').includes('"tarSize"'));
    const e = JSON.parse(readFileSync(f!, 'utf8')) as { size: number };
    writeFileSync(f!, JSON.stringify({ ...e, size: 999 }));
    const r = await push('b');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `^nixoci: error: the digest cache was wrong about the layer of \\/nix\\/store\\/\\S+: the registry holds ${e.size} bytes under its digest sha256:[0-9a-f]{64}, not 999\\nhint: the wrong entry is gone: run the command again\\n$`,
      ),
    );
    const again = await push('b');
    expect(again.code, again.stderr).toBe(0);
    await verifyPushed(testEnv().registry, repo, 'b');
  });

  it('checks a wrong blob size against the size the tag manifest gives, too', async () => {
    const cache = path.join(work, 'cache-tag-size');
    const repo = uniqueRepo('cache-size-tag');
    const push = (...more: string[]) =>
      nixoci([
        'push',
        '--graph',
        fx.graphFile,
        `docker://${testEnv().registry}/${repo}:a`,
        '--cache-dir',
        cache,
        ...more,
      ]);
    const first = await push();
    expect(first.code, first.stderr).toBe(0);
    const [f] = entries(cache).filter((e) => readFileSync(e, 'utf8').includes('"tarSize"'));
    const e = JSON.parse(readFileSync(f!, 'utf8')) as { size: number };
    writeFileSync(f!, JSON.stringify({ ...e, size: 999 }));
    // named by the tag's own manifest (another label: a new manifest for the same tag), so no HEAD
    // was sent: the new manifest got the cached size
    const relabelled = await push('--label', 'x=y');
    expect(relabelled.code).toBe(1);
    expect(relabelled.stderr).toMatch(
      new RegExp(
        `^nixoci: error: the digest cache was wrong about the layer of \\/nix\\/store\\/\\S+: the registry holds ${e.size} bytes under its digest sha256:[0-9a-f]{64}, not 999\\n`,
      ),
    );
    expect((await push('--label', 'x=y')).code).toBe(0);
    await verifyPushed(testEnv().registry, repo, 'a');
  });

  it('ignores a relative XDG_CACHE_HOME, as the XDG spec says, instead of caching into the working directory', async () => {
    const home = path.join(work, 'home');
    const cwd = path.join(work, 'project');
    mkdirSync(home);
    mkdirSync(cwd);
    await nixociJson(['build', '--graph', fx.graphFile, '--to', `oci:${path.join(work, 'xdg-out')}`], {
      cwd,
      env: { HOME: home, XDG_CACHE_HOME: 'cache' },
    });
    expect(readdirSync(cwd)).toEqual([]);
    expect(existsSync(path.join(home, '.cache', 'nixoci', 'v1'))).toBe(true);
    expect(existsSync(path.join(home, '.cache', 'nixoci', 'v8'))).toBe(true);
  });

  it('removes the temp files of killed runs from the directory it writes an entry to', async () => {
    const cache = path.join(work, 'cache-stale-temps');
    const build = async (): Promise<void> => {
      const r = await nixoci([
        'build',
        '--graph',
        fx.graphFile,
        '--to',
        `oci:${path.join(work, 'stale-temps-out')}`,
        '--cache-dir',
        cache,
      ]);
      expect(r.code, r.stderr).toBe(0);
    };
    await build();
    // An entry gone (so that the next run writes it again), and beside it what runs killed in the
    // middle of atomicWrite left: `KEY.json.PID.RANDOM.tmp` (`KEY.json.PID.tmp` of older versions).
    const entry = entries(cache)[0]!;
    rmSync(entry);
    const dir = path.dirname(entry);
    // A pid no process has: pids are below pid_max.
    const dead = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    const plant = (pid: number, old: boolean, tag = `${pid}`): string => {
      const file = path.join(dir, `${old ? 'old' : 'new'}${tag}.json.${tag}.tmp`);
      writeFileSync(file, '{"diffId":');
      if (old) utimesSync(file, twoHoursAgo, twoHoursAgo);
      return path.basename(file);
    };
    // Other entries of the directory, if any, stay.
    const others = readdirSync(dir);
    plant(dead, true); // dead, old: gone
    plant(dead, false); // dead: gone
    plant(dead, false, `${dead}.0123456789abcdef`); // dead, today's name: gone
    // This test's own process, alive: its pid may be a new process's by now (pids repeat), so an
    // old file goes, and only a recent one is a live writer's.
    plant(process.pid, true);
    const live = plant(process.pid, false);
    writeFileSync(path.join(dir, 'notes.txt'), 'mine');
    await build();
    expect(readdirSync(dir).sort()).toEqual([...others, path.basename(entry), live, 'notes.txt'].sort());
    expect(JSON.parse(readFileSync(entry, 'utf8'))).toHaveProperty('digest');
  });
});
