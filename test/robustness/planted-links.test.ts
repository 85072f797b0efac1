// Temp files beside a destination: nixoci used to name them FILE.PID.tmp / FILE.PID.partial and
// open them without O_EXCL, so whoever could write in that directory could plant a symlink at the
// name beforehand and have nixoci write through it into another file. Each run below is held
// before it starts (a shell waiting on stdin, which then execs nixoci: same PID), links are planted
// at every name the old code would have used, and the files they point at must stay untouched.
import { spawn } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliBin, nixoci } from '../helpers/cli.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';

const work = mkdtempSync(join(tmpdir(), 'hx-sec-planted-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let fx: FixtureClosure;
beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'hx-sec-planted' });
});

/** Runs nixoci with `plant(pid)` called before it starts, under the PID it will run as. */
async function runHeld(
  args: string[],
  env: NodeJS.ProcessEnv,
  plant: (pid: number) => void,
): Promise<{ code: number | null; stderr: string }> {
  const child = spawn('sh', ['-c', 'read -r _ && exec "$0" "$@"', cliBin, ...args], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  plant(child.pid!);
  child.stdin.end('go\n');
  return { code: await done, stderr };
}

describe('temp files beside a destination', () => {
  it('never write through a symlink planted at the old predictable names', async () => {
    const dir = mkdtempSync(join(work, 'run-'));
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'precious');
    // The code cache's name (a hash of the bundle and Node): learnt from a run into another dir.
    const probe = join(dir, 'probe');
    expect((await nixoci(['build', '--help'], { env: { XDG_CACHE_HOME: probe } })).code).toBe(0);
    const [cacheName] = readdirSync(join(probe, 'nixoci', 'v8'));
    expect(cacheName).toMatch(/-build\.bin$/);
    const cache = join(dir, 'cache');
    const v8 = join(cache, 'nixoci', 'v8');
    mkdirSync(v8, { recursive: true });
    const layout = join(dir, 'layout');
    mkdirSync(layout);
    const archive = join(dir, 'img.tar');

    const r = await runHeld(
      [
        'build',
        '--graph',
        fx.graphFile,
        '--no-cache',
        '--to',
        `docker-archive:${archive}`,
        '--to',
        `oci:${layout}:hx-sec-planted`,
      ],
      { XDG_CACHE_HOME: cache },
      (pid) => {
        for (const name of [
          `${archive}.${pid}.partial`,
          join(v8, `${cacheName}.${pid}.tmp`),
          join(layout, `oci-layout.${pid}.tmp`),
          join(layout, `index.json.${pid}.tmp`),
        ])
          symlinkSync(victim, name);
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    // and everything was written where it belongs
    expect(readFileSync(archive).subarray(257, 262).toString()).toBe('ustar');
    expect(JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'))).toMatchObject({ schemaVersion: 2 });
    expect(readdirSync(v8)).toContain(cacheName);
  });
});
