// A push makes at most two blobs at a time (one per layer worker), and a layer's turn ends when its
// blob is made, not when the registry has answered its upload: the next layer is read and
// compressed while the registry is still busy with the last one. Checked through a proxy in front
// of the real registry that holds back its answers to uploads, with the built CLI (the layer
// workers only run from dist/).
import { createCipheriv } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { turns } from '../../src/core/turns.js';
import { nixociJson } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { forward } from '../robustness/robust-helpers.js';
import { uniqueRepo, verifyPushed } from './push-helpers.js';

const env = testEnv();
const HOLD_MS = 1500;

/** Three store paths of 3 MiB of noise each: big enough for the layer workers and a streamed upload. */
function storePaths(size = 3 << 20): string[] {
  const root = mkdtempSync(join(tmpdir(), 'nixoci-turns-'));
  return [1, 2, 3].map((seed) => {
    const dir = join(root, `blob-${seed}`);
    mkdirSync(dir);
    const noise = createCipheriv('aes-128-ctr', Buffer.alloc(16, seed), Buffer.alloc(16, size >> 20));
    writeFileSync(join(dir, 'noise.bin'), noise.update(Buffer.alloc(size)));
    return execFileSync('nix-store', ['--add', dir], { encoding: 'utf8' }).trim();
  });
}

describe('push: turns to make blobs', () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    proxy = await startFaultProxy(env.registry);
  });
  afterAll(async () => proxy.close());

  it('starts the next layer once a blob is made, while the registry still holds its answer', async () => {
    const paths = storePaths();
    const events: string[] = [];
    let patches = 0;
    proxy.fault = (req, res) => {
      if (req.method !== 'PATCH') return false;
      const n = ++patches;
      req.once('data', () => events.push(`body ${n}`));
      // Every upload gets its answer late.
      forward(env.registry, req, res, { delayMs: HOLD_MS, onAnswer: () => events.push(`answer ${n}`) });
      return true;
    };
    const repo = uniqueRepo('turns');
    const report = await nixociJson<{ layers: { action: string }[] }>([
      'push',
      ...paths.flatMap((p) => ['--path', p]),
      '--compression',
      'zstd',
      '--no-cache',
      `docker://${proxy.host}/${repo}:t`,
    ]);
    proxy.fault = undefined;
    expect(report.layers.filter((l) => l.action === 'uploaded').length).toBe(3);
    expect(patches).toBe(3);
    // Two layers are made at once; the third one's bytes flow before any upload has its answer.
    expect(events.indexOf('body 3')).toBeGreaterThan(-1);
    expect(events.indexOf('body 3')).toBeLessThan(events.findIndex((e) => e.startsWith('answer')));
    await verifyPushed(env.registry, repo, 't');
  });

  it('layers read back from an earlier destination take no turn to make: all go out at once', async () => {
    // bigger than the loopback socket's buffers, which would take a small blob whole at once
    const size = 24 << 20;
    const paths = storePaths(size);
    const received = [0, 0, 0, 0];
    let atThird: number[] | undefined;
    let uploads = 0;
    proxy.fault = (req, res) => {
      // digests known (from the layout), each layer goes as one PUT with its body (the config too,
      // but small); a slow link: each body takes about a second to go up
      const big = Number(req.headers['content-length'] ?? 0) > 1 << 20;
      if (req.method !== 'PUT' || !(req.url ?? '').includes('/blobs/uploads/') || !big) return false;
      const n = ++uploads;
      req.on('data', (c: Buffer) => {
        if (n === 3 && !atThird) atThird = [...received];
        received[n]! += c.length;
      });
      forward(env.registry, req, res, { throttleBytesPerSec: size });
      return true;
    };
    const repo = uniqueRepo('turns-copy');
    const layout = join(mkdtempSync(join(tmpdir(), 'nixoci-turns-')), 'oci');
    // the layout first: the registry then reads each zstd blob back from it
    const report = await nixociJson<{ bytesRead: number }>([
      'build',
      ...paths.flatMap((p) => ['--path', p]),
      '--compression',
      'zstd',
      '--no-cache',
      '--to',
      `oci:${layout}`,
      '--to',
      `docker://${proxy.host}/${repo}:t`,
    ]);
    proxy.fault = undefined;
    expect(uploads).toBe(3);
    // read from the store once, for the layout
    expect(report.bytesRead).toBe(3 * size);
    // The third upload begins with the first two barely begun: with two turns to make layers, it
    // waited until one of them had been read to its last megabytes.
    expect(atThird, received.join(', ')).toBeDefined();
    expect(Math.max(...atThird!), atThird!.join(', ')).toBeLessThan(size / 2);
    await verifyPushed(env.registry, repo, 't');
  });

  it('turns: at most n out, each given back once, none handed to an aborted waiter', async () => {
    const take = turns(2);
    const a = await take();
    const b = await take();
    let third = false;
    const c = take().then((give) => ((third = true), give));
    await new Promise((r) => setImmediate(r));
    expect(third).toBe(false);
    a();
    a(); // a second give-back of the same turn frees nothing more
    const giveC = await c;
    const abort = new AbortController();
    const d = take(abort.signal);
    let fourth = false;
    const e = take().then((give) => ((fourth = true), give));
    abort.abort();
    b();
    await expect(d).rejects.toThrow(/aborted/);
    // The aborted waiter's turn went straight back: the next one in line has it.
    const giveE = await e;
    expect(fourth).toBe(true);
    giveC();
    giveE();
  });
});
