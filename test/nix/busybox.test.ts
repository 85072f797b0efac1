// nix/busybox.nix for the other architecture: the arm64 images of the example and the test
// fixtures hold Debian's arm64 busybox (fetched by scripts/setup), not the host's x86-64 one.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { sha256Digest } from '../../src/core/digest.js';
import { nixociJson } from '../helpers/cli.js';
import { repoRoot } from '../helpers/env.js';
import { exampleOfflineNix, fixtureClosureNix } from '../helpers/nix.js';

const run = promisify(execFile);
const work = mkdtempSync(join(tmpdir(), 'nixoci-busybox-'));
const env = { ...process.env, NIX_REMOTE: '' };

// ELF e_machine (bytes 18–19, little-endian) of each image architecture
const MACHINE = { amd64: 0x3e, arm64: 0xb7 } as const;
type Arch = keyof typeof MACHINE;
const hostArch: Arch = process.arch === 'arm64' ? 'arm64' : 'amd64';
const foreignArch: Arch = hostArch === 'amd64' ? 'arm64' : 'amd64';
const foreignSystem = foreignArch === 'arm64' ? 'aarch64-linux' : 'x86_64-linux';
const foreignBusybox = `/usr/local/lib/nixoci/busybox/${foreignSystem}/busybox`;
const noForeign = existsSync(foreignBusybox)
  ? undefined
  : `scripts/setup could not fetch Debian's busybox-static:${foreignArch} (${foreignBusybox} is missing)`;

interface Index {
  manifests: { digest: string; platform: { architecture: Arch } }[];
}
interface Manifest {
  config: { digest: string };
  layers: { digest: string }[];
}

/** For each architecture of the OCI layout's index: the e_machine of every bin/busybox in its layers. */
function busyboxMachines(dir: string): Record<string, number[]> {
  const blob = (d: string): string => join(dir, 'blobs', 'sha256', d.slice(7));
  const json = <T>(d: string): T => JSON.parse(readFileSync(blob(d), 'utf8')) as T;
  const top = json<Index>(JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')).manifests[0].digest);
  const out: Record<string, number[]> = {};
  for (const m of top.manifests) {
    const machines: number[] = [];
    for (const l of json<Manifest>(m.digest).layers) {
      const names = execFileSync('tar', ['-tf', blob(l.digest)], { encoding: 'utf8' }).split('\n');
      for (const name of names.filter((n) => /^nix\/store\/[^/]+-busybox\/bin\/busybox$/.test(n))) {
        const elf = execFileSync('tar', ['-xOf', blob(l.digest), name], { maxBuffer: 64 << 20 });
        expect(elf.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
        machines.push(elf.readUInt16LE(18));
      }
    }
    out[m.platform.architecture] = machines;
  }
  return out;
}

describe('nix/busybox.nix for the other architecture', () => {
  it.for([
    ['example', [exampleOfflineNix]],
    ['test fixture', [fixtureClosureNix, '--attr', 'app']],
  ] as const)('gives the %s a busybox of each image architecture', async ([, source], ctx) => {
    if (noForeign) ctx.skip(noForeign);
    const dir = join(work, `oci-${source.length}`);
    const r = await nixociJson<{
      targets: { images: { architecture: Arch; layers: { storePaths: string[] }[] }[] }[];
    }>(['build', '--file', ...source, '--arch', 'amd64,arm64', '--to', `oci:${dir}`]);
    // one busybox each (the host's, which ran the arm64 builds, is not in the arm64 closure)
    expect(busyboxMachines(dir)).toEqual({ amd64: [MACHINE.amd64], arm64: [MACHINE.arm64] });
    const names = r.targets[0]!.images.map((i) => [
      i.architecture,
      i.layers.flatMap((l) => l.storePaths.map((p) => p.replace(/^\/nix\/store\/[^-]+-/, ''))).sort(),
    ]);
    expect(names[1]).toEqual(['arm64', names[0]![1]]);
  });

  it('makes the applet links of the foreign binary, and falls back to the host binary without one', async (ctx) => {
    if (noForeign) ctx.skip(noForeign);
    const build = async (args: string): Promise<string> =>
      (
        await run(
          'nix-build',
          [
            '--no-out-link',
            '-E',
            `import ${join(repoRoot, 'nix', 'busybox.nix')} { system = "${foreignSystem}"; ${args} }`,
          ],
          { env, encoding: 'utf8' },
        )
      ).stdout.trim();
    const foreign = await build('');
    // (digests: vitest's diff of two unequal 2 MB buffers takes minutes)
    expect(sha256Digest(readFileSync(join(foreign, 'bin', 'busybox')))).toBe(
      sha256Digest(readFileSync(foreignBusybox)),
    );
    for (const applet of ['sh', 'ls', 'cat', 'sed'])
      expect(execFileSync('readlink', [join(foreign, 'bin', applet)], { encoding: 'utf8' }).trim()).toBe(
        'busybox',
      );
    // no fetched binary (setup could not download it): the host's busybox, as before
    const host = await build(`foreignDir = ${join(work, 'none')};`);
    expect(readFileSync(join(host, 'bin', 'busybox')).readUInt16LE(18)).toBe(MACHINE[hostArch]);
  });

  it("runs the nix/ library's builders (plan, apps) for the other architecture", async (ctx) => {
    if (noForeign) ctx.skip(noForeign);
    const out = await run(
      'nix-build',
      [
        '--no-out-link',
        '--option',
        'system',
        foreignSystem,
        '-E',
        `let o = import ${exampleOfflineNix} { }; i = (import ${join(repoRoot, 'nix')} { }).image { name = "hx"; packages = [ o ]; }; in [ i i.copyTo o.graph ]`,
      ],
      { env, encoding: 'utf8' },
    );
    const [plan, copyTo, graph] = out.stdout.trim().split('\n');
    expect(JSON.parse(readFileSync(plan!, 'utf8')).arch).toBe(foreignArch);
    // the app runs here: its #! busybox is the host's
    const usage = await run(join(copyTo!, 'bin', 'copy-to'), [], { encoding: 'utf8' }).catch(
      (e: unknown) => e,
    );
    expect(usage).toMatchObject({ code: 2, stderr: expect.stringMatching(/^usage: copy-to DEST/) });
    const closure = (JSON.parse(readFileSync(graph!, 'utf8')) as { closure: { path: string }[] }).closure;
    expect(closure.map((c) => c.path.replace(/^\/nix\/store\/[^-]+-/, '')).sort()).toEqual([
      'busybox',
      'hello-nixoci',
      'hello-nixoci-lib',
    ]);
  });
});
