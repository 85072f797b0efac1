import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PREPARED_FRESH_MS } from '../../src/image/target.js';
import { dockerRmi, dockerRunOutput, docker } from '../helpers/docker.js';
import { nixoci, nixociJson } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure } from '../helpers/nix.js';

interface Report {
  manifestDigest: string;
  bytesRead: number;
  layers: { action: string; bytesSent: number }[];
  targets: { notes: string[]; images: { configDigest: string }[] }[];
}

describe('nixoci load of an unchanged image', () => {
  it('sends nothing when every tag already names the same image, and sends again once one is gone', async () => {
    const fx = await buildFixtureClosure({ tag: 'load-unchanged' });
    const env = testEnv();
    const name = 'nixoci-test/unchanged';
    await dockerRmi(`${name}:a`, `${name}:b`);
    const args = [
      'load',
      '--graph',
      fx.graphFile,
      '--host',
      env.dockerHost,
      '--entrypoint',
      `${fx.app}/bin/app`,
    ];
    const first = await nixociJson<Report>([...args, `${name}:a`, '--tag', 'b']);
    expect(first.layers.some((l) => l.action === 'sent')).toBe(true);

    const again = await nixociJson<Report>([...args, `${name}:a`, '--tag', 'b']);
    expect(again.layers.every((l) => l.action === 'omitted' && l.bytesSent === 0)).toBe(true);
    expect(again.bytesRead).toBe(0);
    expect(again.targets[0]!.notes.some((n) => n.startsWith('unchanged:'))).toBe(true);
    expect(again.targets[0]!.images[0]!.configDigest).toBe(first.targets[0]!.images[0]!.configDigest);

    // One tag gone: the engine does not have the image under every tag, so it is loaded (its
    // layers are still omitted: the engine has their chain).
    await docker(['rmi', `${name}:b`]);
    const retag = await nixociJson<Report>([...args, `${name}:a`, '--tag', 'b']);
    expect(retag.targets[0]!.notes.some((n) => n.startsWith('unchanged:'))).toBe(false);
    expect(await dockerRunOutput(`${name}:b`)).toContain('fixture app load-unchanged');
  });

  it('asks the engine again when reading the closure took long enough for its images to change', async () => {
    // The engine is asked what it holds while the closure is read; a slow source (here a `nix`
    // held until the tag is removed, as a Nix build would be) must not make a removed tag look
    // "unchanged". (It was a fixed 0.7 s into a 2 s `nix`: a slow `docker rmi` came too late.)
    const fx = await buildFixtureClosure({ tag: 'load-stale' });
    const env = testEnv();
    const name = 'nixoci-test/stale';
    await dockerRmi(`${name}:a`);
    const dir = mkdtempSync(join(tmpdir(), 'nixoci-slow-nix-'));
    try {
      const slowNix = join(dir, 'nix');
      const started = join(dir, 'started');
      const go = join(dir, 'go');
      // after the hold, a sleep: the read takes over PREPARED_FRESH_MS (past which the engine is
      // asked again) on any machine; a slow one only makes it longer
      writeFileSync(
        slowNix,
        `#!/bin/sh\ntouch ${started}\nwhile [ ! -e ${go} ]; do sleep 0.05; done\nsleep ${PREPARED_FRESH_MS / 1000 + 1}\nexec nix "$@"\n`,
      );
      chmodSync(slowNix, 0o755);
      const args = [
        'load',
        '--path',
        fx.app,
        '--host',
        env.dockerHost,
        '--entrypoint',
        `${fx.app}/bin/app`,
        `${name}:a`,
      ];
      expect((await nixoci(args)).code).toBe(0);

      const slow = nixoci([...args, '--json'], { env: { NIXOCI_NIX: slowNix } });
      for (const end = Date.now() + 90_000; !existsSync(started) && Date.now() < end;)
        await new Promise((r) => setTimeout(r, 20));
      await docker(['rmi', `${name}:a`]);
      writeFileSync(go, '');
      const r = await slow;
      expect(r.code, r.stderr).toBe(0);
      const report = JSON.parse(r.stdout) as Report;
      expect(report.targets[0]!.notes.some((n) => n.startsWith('unchanged:'))).toBe(false);
      expect(report.layers.some((l) => l.action === 'sent')).toBe(true);
      expect(await dockerRunOutput(`${name}:a`)).toContain('fixture app load-stale');
    } finally {
      writeFileSync(join(dir, 'go'), '');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
