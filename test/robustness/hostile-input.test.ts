// Hostile and broken input, table-driven, through the built CLI: graph JSON, store contents (a fake
// store via NIX_STORE_DIR), devbox files, references, flags, credentials and registry answers. Each
// case: a non-zero exit, `nixoci: error: …` and at most a `hint: …` line, no stack trace, and
// nothing half-written (no output dir or file, no tag in the registry).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pLimit from 'p-limit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaType } from '../../src/core/media-types.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { reply, startFaultProxy, type FaultProxy } from '../registry/fault-proxy.js';
import { FakeStore, makeSocket } from './fake-store.js';
import { clearErrorProblems, spawnCli, type Child } from './robust-helpers.js';

const env = testEnv();

interface Case {
  readonly name: string;
  /** Arguments; `OUT` in any of them is replaced by the case's output path. */
  readonly args: (c: Ctx) => string[];
  readonly env?: (c: Ctx) => NodeJS.ProcessEnv;
  readonly cwd?: (c: Ctx) => string;
  /** Runs while the CLI does (e.g. removes a store path). */
  readonly during?: (c: Ctx, child: Child) => Promise<void>;
  /** Fault for the proxy in front of the plain registry (registry answers). */
  readonly fault?: (req: IncomingMessage, res: ServerResponse) => boolean;
  readonly code?: number;
  /** A piece of the error line. */
  readonly says: string | RegExp;
  /** The registry may hold the tag afterwards (the fault came after the registry stored it). */
  readonly tagMayExist?: boolean;
}

interface Ctx {
  readonly dir: string;
  readonly out: string;
  readonly proxy: string;
  readonly repo: string;
  readonly fx: FixtureClosure;
  file(name: string, content: string | Buffer): string;
}

const narHash = `sha256-${Buffer.alloc(32, 7).toString('base64')}`;
const P = (name: string): string => `/nix/store/${'a'.repeat(32)}-${name}`;
const entry = (p: string, refs: string[] = [], extra: object = {}): object => ({
  path: p,
  narHash,
  narSize: 10,
  references: refs,
  ...extra,
});
const graphCase = (
  name: string,
  content: string | Buffer | (() => string | Buffer),
  says: string | RegExp,
): Case => ({
  name: `graph: ${name}`,
  args: (c) => [
    'build',
    '--graph',
    c.file('g.json', typeof content === 'function' ? content() : content),
    '--to',
    `oci:${c.out}:t`,
  ],
  says,
});
const fakeStoreCase = (name: string, fill: (dir: string) => void, says: string | RegExp): Case => {
  let store: FakeStore | undefined;
  return {
    name: `store: ${name}`,
    env: () => store!.env,
    args: (c) => {
      store = new FakeStore(c.dir);
      store.add('hostile', fill);
      return ['build', '--graph', store.graph(path.join(c.dir, 'g.json')), '--to', `oci:${c.out}:t`];
    },
    says,
  };
};
const push =
  (extra: string[] = []) =>
  (c: Ctx) => ['push', '--graph', c.fx.graphFile, `${c.proxy}/${c.repo}:t`, ...extra];
const basicPush = (c: Ctx, extra: string[] = []) => [
  'push',
  '--graph',
  c.fx.graphFile,
  `${env.registryBasic}/${c.repo}:t`,
  ...extra,
];
const dockerConfig = (config: object | string) => (c: Ctx) => {
  const d = path.join(c.dir, 'docker');
  mkdirSync(d, { recursive: true });
  writeFileSync(path.join(d, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  return { DOCKER_CONFIG: d, HOME: c.dir, NIXOCI_REGISTRY_USER: '', NIXOCI_REGISTRY_PASSWORD: '' };
};
const helper = (c: Ctx, name: string, script: string): string => {
  const bin = path.join(c.dir, 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(path.join(bin, `docker-credential-${name}`), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
  return bin;
};
const helperEnv = (name: string, script: string) => (c: Ctx) => {
  const bin = helper(c, name, script);
  return {
    ...dockerConfig({ credHelpers: { [env.registryBasic]: name } })(c),
    PATH: `${bin}:${process.env.PATH}`,
  };
};
const answer =
  (
    match: (req: IncomingMessage) => boolean,
    status: number,
    headers: Record<string, string> = {},
    body = '',
  ) =>
  (req: IncomingMessage, res: ServerResponse): boolean => {
    if (!match(req)) return false;
    reply(req, res, status, headers, body);
    return true;
  };
const isManifestGet = (req: IncomingMessage): boolean =>
  req.method === 'GET' && (req.url ?? '').includes('/manifests/');

const cases: Case[] = [
  // --- graph JSON ---
  graphCase('not JSON', '{"closure": [', /not valid JSON/),
  graphCase('a number', '42', /not a closure graph/),
  graphCase('a string', '"/nix/store"', /not a closure graph/),
  graphCase('null', 'null', /not a closure graph/),
  graphCase(
    'narSize is a string',
    JSON.stringify([{ ...entry(P('x')), narSize: '10' }]),
    /not a closure graph/,
  ),
  graphCase(
    'narSize 1e300',
    JSON.stringify([entry(P('x'))]).replace('"narSize":10', '"narSize":1e300'),
    /not a closure graph/,
  ),
  graphCase('narSize negative', JSON.stringify([{ ...entry(P('x')), narSize: -1 }]), /not a closure graph/),
  graphCase(
    'references not an array',
    JSON.stringify([{ ...entry(P('x')), references: P('y') }]),
    /not a closure graph/,
  ),
  graphCase(
    'dangling reference',
    JSON.stringify([entry(P('x'), [P('y').replace('a', 'b')])]),
    /not in the graph/,
  ),
  graphCase('path outside the store', JSON.stringify([entry('/etc/passwd')]), /outside the store dir/),
  graphCase(
    'a .. component',
    JSON.stringify([entry('/nix/store/../etc/passwd')]),
    /"\." or "\.\." component/,
  ),
  graphCase('a NUL byte', JSON.stringify([entry(`${P('x')}\u0000evil`)]), /NUL byte/),
  graphCase('a relative path', JSON.stringify([entry('nix/store/x')]), /relative path/),
  graphCase('a path inside a store path', JSON.stringify([entry(`${P('x')}/bin/sh`)]), /inside a store path/),
  graphCase('listed twice', JSON.stringify([entry(P('x')), entry(P('x'))]), /listed twice/),
  graphCase('empty', '[]', /no store paths/),
  graphCase('bad narHash', JSON.stringify([{ ...entry(P('x')), narHash: 'md5:abc' }]), /not a sha256 hash/),
  graphCase(
    'path-info object with an invalid path',
    JSON.stringify({ [P('x')]: null }),
    /not valid in the Nix store/,
  ),
  graphCase(
    'roots not in the graph',
    JSON.stringify({ roots: [P('r')], closure: [entry(P('x'))] }),
    /root .* not in the graph/,
  ),
  graphCase('a path not on disk', JSON.stringify([entry(P('x'))]), /does not exist on disk/),
  graphCase('invalid UTF-8', Buffer.from([0x5b, 0x22, 0xff, 0xfe, 0x22, 0x5d]), /not a store path/),
  graphCase(
    '100 MB of one string',
    () => `["${'x'.repeat(100 << 20)}"]`,
    /is not a store path: relative path/,
  ),
  graphCase(
    '100 MB of nesting',
    () => '['.repeat(50 << 20) + ']'.repeat(50 << 20),
    /not valid JSON|not a closure graph/,
  ),
  {
    name: 'graph: a cycle between real paths',
    args: (c) => {
      const g = JSON.parse(readGraph(c.fx.graphFile)) as {
        roots?: string[];
        closure: { path: string; references: string[] }[];
      };
      const busybox = g.closure.find((e) => e.path.endsWith('-busybox'))!;
      busybox.references.push(c.fx.app);
      delete g.roots;
      return ['build', '--graph', c.file('g.json', JSON.stringify(g)), '--to', `oci:${c.out}:t`];
    },
    says: /references form a cycle/,
  },
  {
    name: 'graph: /dev/zero',
    args: (c) => ['build', '--graph', '/dev/zero', '--to', `oci:${c.out}:t`],
    says: /not a regular file/,
  },
  {
    name: 'graph: a FIFO',
    args: (c) => {
      const f = path.join(c.dir, 'fifo');
      execFileSync('mkfifo', [f]);
      return ['build', '--graph', f, '--to', `oci:${c.out}:t`];
    },
    says: /not a regular file/,
  },
  {
    name: 'graph: a directory',
    args: (c) => ['build', '--graph', c.dir, '--to', `oci:${c.out}:t`],
    says: /not a regular file/,
  },
  {
    name: 'graph: missing file',
    args: (c) => ['build', '--graph', path.join(c.dir, 'nope.json'), '--to', `oci:${c.out}:t`],
    says: /ENOENT/,
  },
  // --- store contents ---
  fakeStoreCase(
    'a FIFO inside a path',
    (d) => execFileSync('mkfifo', [path.join(d, 'pipe')]),
    /it is a FIFO/,
  ),
  fakeStoreCase('a unix socket inside a path', (d) => makeSocket(path.join(d, 'sock')), /it is a socket/),
  fakeStoreCase(
    'a device node inside a path',
    (d) => execFileSync('mknod', [path.join(d, 'null'), 'c', '1', '3']),
    /device node/,
  ),
  fakeStoreCase(
    'a FIFO deep down, name with a newline',
    (d) => {
      mkdirSync(path.join(d, 'a\nb'));
      execFileSync('mkfifo', [path.join(d, 'a\nb', 'p')]);
    },
    /a\\x0ab\/p in a layer: it is a FIFO/,
  ),
  fakeStoreCase(
    'a FIFO whose name is not UTF-8: its bytes shown as \\xNN, not U+FFFD',
    // by python3, given the bytes in hex: a name passed as an argument would go through UTF-8
    (d) =>
      execFileSync('python3', [
        '-c',
        'import os,sys; os.mkfifo(bytes.fromhex(sys.argv[1]))',
        Buffer.concat([Buffer.from(`${d}/bad`), Buffer.from([0xff, 0xc3])]).toString('hex'),
      ]),
    /\/bad\\xff\\xc3 in a layer: it is a FIFO/,
  ),
  {
    name: 'store: a path that vanishes mid-build',
    env: (c) => ({ NIX_STORE_DIR: path.join(c.dir, 'store') }),
    args: (c) => {
      const store = new FakeStore(c.dir);
      // The big paths come first in the plan (the small one references them) and keep the layer
      // writers (two at a time) busy while the small one is removed.
      const bigs = ['big1', 'big2'].map((n) =>
        store.add(n, (d) => execFileSync('truncate', ['-s', '1500M', path.join(d, 'sparse')])),
      );
      store.add('small', (d) => writeFileSync(path.join(d, 'f'), 'x'), bigs);
      // zstd: the zeros make small blobs, not 3 GB of disk writes that take a busy machine minutes
      return [
        'build',
        '--graph',
        store.graph(path.join(c.dir, 'g.json')),
        '--to',
        `oci:${c.out}:t`,
        '--compression',
        'zstd',
      ];
    },
    during: async (c, child) => {
      // Waits for the layer writers to begin (their temp blobs appear), however slow the machine:
      // removing the path before would test a path missing from the start.
      const blobs = path.join(c.out, 'blobs', 'sha256');
      const listed = (): string[] => (existsSync(blobs) ? readdirSync(blobs) : []);
      for (
        const end = Date.now() + 90_000;
        !listed().some((f) => f.startsWith('.tmp-')) && child.child.exitCode === null && Date.now() < end;
      )
        await new Promise((r) => setTimeout(r, 10));
      // Stopped while small goes, so that no layer can be finished in between: small is begun only
      // once a big one is done, so with no layer blob written yet it cannot have been read.
      child.child.kill('SIGSTOP');
      const raced = listed().some((f) => !f.startsWith('.tmp-'));
      const small = readdirSync(path.join(c.dir, 'store')).find((n) => n.endsWith('-small'))!;
      rmSync(path.join(c.dir, 'store', small), { recursive: true });
      child.child.kill('SIGCONT');
      if (raced) throw new Error('vanish case: a big layer was written before the small path was removed');
    },
    says: /cannot read .*-small.*ENOENT/,
  },
  // --- devbox ---
  {
    name: 'devbox: not JSON',
    args: (c) => ['build', '--devbox', devbox(c, '{ "packages": [ '), '--to', `oci:${c.out}:t`],
    says: /devbox\.json/,
  },
  {
    name: 'devbox: packages is a number',
    args: (c) => ['build', '--devbox', devbox(c, '{"packages": 42}'), '--to', `oci:${c.out}:t`],
    says: /devbox\.json/,
  },
  {
    name: 'devbox: lock file garbage',
    args: (c) => [
      'build',
      '--devbox',
      devbox(c, '{"packages": ["hello@1"]}', '\u0000\u0001garbage'),
      '--to',
      `oci:${c.out}:t`,
    ],
    says: /devbox\.lock/,
  },
  {
    name: 'devbox: no such directory',
    args: (c) => ['build', '--devbox', path.join(c.dir, 'none'), '--to', `oci:${c.out}:t`],
    says: /devbox/,
  },
  // --- references ---
  {
    name: 'ref: empty docker://',
    args: (c) => ['push', '--graph', c.fx.graphFile, 'docker://'],
    code: 2,
    says: /push/,
  },
  {
    name: 'ref: upper-case repository',
    args: (c) => ['push', '--graph', c.fx.graphFile, `${env.registry}/Upper/Repo:t`],
    code: 2,
    says: /push/,
  },
  {
    name: 'ref: tag of 129 characters',
    args: (c) => ['push', '--graph', c.fx.graphFile, `${env.registry}/r:${'t'.repeat(129)}`],
    code: 2,
    says: /push/,
  },
  {
    name: 'ref: short digest',
    args: (c) => ['push', '--graph', c.fx.graphFile, `${env.registry}/r@sha256:1234`],
    code: 2,
    says: /push/,
  },
  {
    name: 'ref: two tags',
    args: (c) => ['push', '--graph', c.fx.graphFile, `${env.registry}/r:a:b`],
    code: 2,
    says: /push/,
  },
  {
    name: 'ref: load name with a space',
    args: (c) => ['load', '--graph', c.fx.graphFile, 'bad name:t'],
    code: 2,
    says: /load/,
  },
  {
    name: 'ref: oci: without a directory',
    args: (c) => ['build', '--graph', c.fx.graphFile, '--to', 'oci:'],
    code: 2,
    says: /needs a directory/,
  },
  {
    // Node's recursive mkdir spins forever on such a path (the child ENOENT, the parent EEXIST).
    name: 'ref: oci: under /proc, whose parent exists but cannot hold it',
    args: (c) => ['build', '--graph', c.fx.graphFile, '--to', 'oci:/proc/nixoci-test/out:t'],
    code: 1,
    says: /cannot write oci:\/proc\/nixoci-test\/out.*ENOENT/,
  },
  {
    name: 'ref: oci: and the code cache under /proc (XDG_CACHE_HOME), the layout under a dangling link',
    env: () => ({ XDG_CACHE_HOME: '/proc/nixoci-test/cache' }),
    args: (c) => {
      execFileSync('ln', ['-s', path.join(c.dir, 'gone'), path.join(c.dir, 'dangling')]);
      return ['build', '--graph', c.fx.graphFile, '--to', `oci:${path.join(c.dir, 'dangling', 'out')}:t`];
    },
    code: 1,
    says: /cannot write oci:.*dangling/,
  },
  ...['bad//name:1', 'bad-:1', 'Bad:1', 'app:'].map((n): Case => ({
    name: `ref: docker-archive: with a name docker load refuses (${n})`,
    args: (c) => ['build', '--graph', c.fx.graphFile, '--to', `docker-archive:${c.out}:${n}`],
    code: 2,
    says: /is not a NAME\[:TAG\]/,
  })),
  {
    name: 'ref: two docker-archive: destinations with the same file',
    args: (c) => [
      'build',
      '--graph',
      c.fx.graphFile,
      '--to',
      `docker-archive:${c.out}:a:1`,
      '--to',
      `docker-archive:${c.out}/../out:b:2`,
    ],
    code: 2,
    says: /two destinations write the same file/,
  },
  {
    name: 'ref: --arch with several platforms and a docker-archive destination (known before writing)',
    args: (c) => [
      'build',
      '--graph',
      c.fx.graphFile,
      '--arch',
      'amd64,arm64',
      '--to',
      `oci:${c.out}:t`,
      '--to',
      `docker-archive:${c.out}.tar`,
    ],
    code: 2,
    says: /a docker-archive holds one platform, --arch amd64,arm64 asks for several/,
  },
  {
    name: 'ref: diff with both images from standard input',
    args: () => ['diff', 'docker-archive:-', 'docker-archive:-'],
    code: 2,
    says: /only one image can come from standard input/,
  },
  {
    name: 'ref: inspect an image for several platforms',
    args: (c) => ['inspect', `oci:${c.dir}`, '--arch', 'amd64,arm64'],
    code: 2,
    says: /read for one platform at a time/,
  },
  {
    name: 'ref: unknown transport',
    args: (c) => ['build', '--graph', c.fx.graphFile, '--to', 'ftp://x/y'],
    code: 2,
    says: /unknown destination/,
  },
  // --- flags ---
  {
    name: 'flag: unknown',
    args: (c) => ['build', '--graph', c.fx.graphFile, '--frobnicate', '--to', `oci:${c.out}:t`],
    code: 2,
    says: /unknown option/,
  },
  {
    name: 'flag: --max-layers 0',
    args: (c) => ['build', '--graph', c.fx.graphFile, '--max-layers', '0', '--to', `oci:${c.out}:t`],
    code: 2,
    says: /max-layers/,
  },
  {
    name: 'flag: --max-layers 1e3',
    args: (c) => ['build', '--graph', c.fx.graphFile, '--max-layers', '1e3', '--to', `oci:${c.out}:t`],
    code: 2,
    says: /max-layers/,
  },
  { name: 'flag: --concurrency 1000', args: push(['--concurrency', '1000']), code: 2, says: /concurrency/ },
  {
    name: 'flag: --arch riscv64',
    args: (c) => ['build', '--graph', c.fx.graphFile, '--arch', 'riscv64', '--to', `oci:${c.out}:t`],
    code: 2,
    says: /arch/,
  },
  {
    name: 'flag: --compression lz4',
    args: (c) => ['build', '--graph', c.fx.graphFile, '--compression', 'lz4', '--to', `oci:${c.out}:t`],
    code: 2,
    says: /compression/,
  },
  {
    name: 'flag: --entrypoint [1,2]',
    args: (c) => ['build', '--graph', c.fx.graphFile, '--entrypoint', '[1,2]', '--to', `oci:${c.out}:t`],
    code: 2,
    says: /entrypoint/,
  },
  {
    name: 'flag: --entrypoint with shell quotes (split on spaces, they would end up in the words)',
    args: (c) => [
      'build',
      '--graph',
      c.fx.graphFile,
      '--entrypoint',
      "sh -c 'echo hi'",
      '--to',
      `oci:${c.out}:t`,
    ],
    code: 2,
    says: /quotes and backslashes are not parsed.*JSON array/,
  },
  {
    name: 'flag: --copy of a file onto a directory the customisation layer makes (/etc)',
    args: (c) => [
      'build',
      '--graph',
      c.fx.graphFile,
      '--copy',
      `${c.file('f.txt', 'x')}:/etc`,
      '--to',
      `oci:${c.out}:t`,
    ],
    code: 1,
    says: /--copy: \/etc would be a directory and a file/,
  },
  {
    name: 'flag: --copy of a FIFO',
    args: (c) => {
      execFileSync('mkfifo', [path.join(c.dir, 'fifo')]);
      return [
        'build',
        '--graph',
        c.fx.graphFile,
        '--copy',
        `${path.join(c.dir, 'fifo')}:/f`,
        '--to',
        `oci:${c.out}:t`,
      ];
    },
    code: 1,
    says: /is a FIFO/,
  },
  {
    name: 'flag: --user with a name no /etc/passwd can have',
    args: (c) => [
      'build',
      '--graph',
      c.fx.graphFile,
      '--user',
      'Bob:1000',
      '--bin-farm',
      '--to',
      `oci:${c.out}:t`,
    ],
    code: 2,
    says: /--user "Bob:1000": expected UID\[:GID\] or NAME\[:UID\]/,
  },
  {
    name: 'flag: --user with a group name (the help says UID[:GID]|NAME)',
    args: (c) => ['build', '--graph', c.fx.graphFile, '--user', 'nobody:nogroup', '--to', `oci:${c.out}:t`],
    code: 2,
    says: /--user nobody:nogroup: group names are refused; give the numeric GID/,
  },
  {
    name: 'flag: --user UID:GROUPNAME',
    args: (c) => ['build', '--graph', c.fx.graphFile, '--user', '1000:users', '--to', `oci:${c.out}:t`],
    code: 2,
    says: /--user 1000:users: group names are refused; give the numeric GID/,
  },
  {
    name: 'flag: --max-layers 1 with the customisation layer (would make 2 layers)',
    args: (c) => [
      'build',
      '--graph',
      c.fx.graphFile,
      '--bin-farm',
      '--max-layers',
      '1',
      '--to',
      `oci:${c.out}:t`,
    ],
    code: 2,
    says: /--max-layers 1: the customisation layer needs a layer of its own/,
  },
  {
    name: 'flag: --workdir relative',
    args: (c) => ['build', '--graph', c.fx.graphFile, '--workdir', 'app', '--to', `oci:${c.out}:t`],
    code: 2,
    says: /--workdir app: must be an absolute path/,
  },
  {
    name: 'source: --path only for arm64 while building amd64',
    args: (c) => ['build', '--path', `arm64=${c.fx.app}`, '--to', `oci:${c.out}:t`],
    code: 2,
    says: /arm64 is not among the --arch \(amd64\); add it/,
  },
  {
    name: 'source: --installable with an architecture prefix',
    args: (c) => ['build', '--installable', 'amd64=./flake#app', '--to', `oci:${c.out}:t`],
    code: 2,
    says: /takes no architecture prefix/,
  },
  {
    name: 'flag: --created yesterday',
    args: (c) => ['build', '--graph', c.fx.graphFile, '--created', 'yesterday', '--to', `oci:${c.out}:t`],
    code: 2,
    says: /created/,
  },
  ...['2024-02-30T00:00:00Z', '2023-02-29T12:00:00Z', '2024-01-01T00:00:00', '2024-01-01 00:00:00Z'].map(
    (t): Case => ({
      name: `flag: --created ${t} (no such day, or no offset: the engine would refuse the image)`,
      args: (c) => ['build', '--graph', c.fx.graphFile, '--created', t, '--to', `oci:${c.out}:t`],
      code: 2,
      says: /--created .*RFC 3339/,
    }),
  ),
  ...['0', '080', '65536'].map((port): Case => ({
    name: `flag: --expose ${port}`,
    args: (c) => ['build', '--graph', c.fx.graphFile, '--expose', port, '--to', `oci:${c.out}:t`],
    code: 2,
    says: /--expose .*expected PORT \(1–65535\)/,
  })),
  {
    name: 'flag: --expose 70000',
    args: (c) => ['build', '--graph', c.fx.graphFile, '--expose', '70000', '--to', `oci:${c.out}:t`],
    code: 2,
    says: /expose/,
  },
  { name: 'flag: --graph without a value', args: () => ['build', '--graph'], code: 2, says: /graph/ },
  // --- credentials (basic-auth registry) ---
  {
    name: 'creds: --creds without a colon',
    args: (c) => basicPush(c, ['--creds', 'justauser']),
    code: 2,
    says: /--creds/,
  },
  {
    name: 'creds: config.json not JSON',
    env: dockerConfig('{"auths": {'),
    args: (c) => basicPush(c),
    says: /config\.json/,
  },
  {
    name: 'creds: config.json auth without a colon',
    env: dockerConfig({
      auths: { [env.registryBasic]: { auth: Buffer.from('nocolon').toString('base64') } },
    }),
    args: (c) => basicPush(c),
    says: /config\.json|credentials/,
  },
  {
    name: 'creds: credential helper missing',
    env: (c) => ({ ...dockerConfig({ credHelpers: { [env.registryBasic]: 'nonexistent-xyz' } })(c) }),
    args: (c) => basicPush(c),
    says: /docker-credential-nonexistent-xyz/,
  },
  {
    name: 'creds: credential helper fails',
    env: helperEnv('fails', 'echo "helper broke" >&2; exit 3'),
    args: (c) => basicPush(c),
    says: /docker-credential-fails/,
  },
  {
    name: 'creds: credential helper prints garbage',
    env: helperEnv('garbage', 'echo "not json at all"'),
    args: (c) => basicPush(c),
    says: /docker-credential-garbage/,
  },
  // --- registry answers (through the proxy in front of the plain registry) ---
  {
    name: 'registry: manifest is not JSON (then every request 500)',
    fault: (req, res) => {
      if (isManifestGet(req))
        return answer(
          () => true,
          200,
          { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
          '{not json',
        )(req, res);
      return answer(() => true, 500)(req, res);
    },
    args: push(),
    says: /500/,
  },
  {
    name: 'registry: manifest served as text/html (a login page), its bytes shaped like one',
    fault: (req, res) =>
      isManifestGet(req) &&
      answer(
        () => true,
        200,
        { 'content-type': 'text/html; charset=utf-8' },
        JSON.stringify({
          schemaVersion: 2,
          config: { mediaType: MediaType.ociConfig, digest: `sha256:${'1'.repeat(64)}`, size: 2 },
          layers: [],
        }),
      )(req, res),
    args: (c) => ['inspect', `docker://${c.proxy}/${c.repo}:t`],
    says: /served as text\/html, not as an image manifest/,
  },
  {
    name: 'registry: upload sent to another host, which answers 401',
    fault: (req, res) => {
      const url = req.url ?? '';
      if (url.includes('/elsewhere')) {
        reply(req, res, 401, { 'www-authenticate': 'Basic realm="storage"' });
        return true;
      }
      if (req.method !== 'POST' || !url.includes('/blobs/uploads/')) return false;
      const port = (req.headers.host ?? '').split(':')[1];
      const repo = /\/v2\/(.*)\/blobs\/uploads\//.exec(url)![1]!;
      reply(req, res, 202, { location: `http://localhost:${port}/v2/${repo}/blobs/uploads/elsewhere` });
      return true;
    },
    args: push(),
    says: /localhost:\d+, where the registry sent the upload, answered 401/,
  },
  {
    name: "registry: streamed upload refused with 401: the registry's reason is shown",
    fault: (req, res) => {
      if (req.method !== 'PATCH') return false;
      reply(
        req,
        res,
        401,
        { 'www-authenticate': 'Basic realm="uploads"', 'content-type': 'application/json' },
        JSON.stringify({ errors: [{ code: 'DENIED', message: 'quota exceeded for this namespace' }] }),
      );
      return true;
    },
    args: push(),
    says: /upload blob: 401 DENIED: quota exceeded for this namespace/,
  },
  {
    name: "registry: manifest refused with a detail in words (distribution's body size limit)",
    fault: (req, res) => {
      if (req.method !== 'PUT' || !(req.url ?? '').includes('/manifests/')) return false;
      reply(
        req,
        res,
        400,
        { 'content-type': 'application/json' },
        JSON.stringify({
          errors: [
            { code: 'MANIFEST_INVALID', message: 'manifest invalid', detail: 'http: request body too large' },
          ],
        }),
      );
      return true;
    },
    args: push(),
    says: /400 MANIFEST_INVALID: manifest invalid \(http: request body too large\)/,
  },
  {
    name: 'registry: always 503',
    fault: answer(() => true, 503, { 'retry-after': '0' }),
    args: push(),
    says: /503/,
  },
  {
    name: 'registry: error body not JSON',
    fault: answer((r) => r.method === 'POST', 400, {}, '<html>\u0000oops'),
    args: push(),
    says: /400/,
  },
  {
    name: 'registry: upload redirected to another host',
    fault: answer((r) => r.method === 'POST', 307, { location: 'http://localhost:9/elsewhere' }),
    args: push(),
    says: /307/,
  },
  {
    name: 'registry: 401 with an unreadable challenge',
    fault: answer(() => true, 401, { 'www-authenticate': 'Bearer realm=' }),
    args: push(),
    code: 1,
    says: /401|challenge/,
  },
  {
    name: 'registry: token realm answers garbage',
    fault: (req, res) => {
      if ((req.url ?? '').startsWith('/token/'))
        return answer(() => true, 200, { 'content-type': 'application/json' }, 'garbage')(req, res);
      const n = /hostile-(\d+)/.exec(req.url ?? '')?.[1];
      const realm = `http://${req.headers.host}/token/${n}`;
      return answer(() => true, 401, { 'www-authenticate': `Bearer realm="${realm}",service="x"` })(req, res);
    },
    args: push(),
    says: /token/,
  },
  {
    name: 'registry: manifest stored under another digest (Docker-Content-Digest)',
    fault: (req, res) => {
      if (req.method !== 'PUT' || !(req.url ?? '').includes('/manifests/')) return false;
      reply(req, res, 201, { 'docker-content-digest': `sha256:${'0'.repeat(64)}` });
      return true;
    },
    args: push(),
    says: /digest/,
  },
];

function readGraph(f: string): string {
  return readFileSync(f, 'utf8');
}

function devbox(c: Ctx, json: string, lock?: string): string {
  const d = path.join(c.dir, 'devbox');
  mkdirSync(d, { recursive: true });
  writeFileSync(path.join(d, 'devbox.json'), json);
  if (lock !== undefined) writeFileSync(path.join(d, 'devbox.lock'), lock);
  return d;
}

describe('hostile and broken input', () => {
  let fx: FixtureClosure;
  let work: string;
  let proxy: FaultProxy;
  const faults = new Map<string, Case['fault']>();
  beforeAll(async () => {
    fx = await buildFixtureClosure({ tag: 'hostile' });
    work = mkdtempSync(path.join(tmpdir(), 'nixoci-hostile-'));
    proxy = await startFaultProxy(env.registry);
    // One proxy for every case: the repository in the path says which case's fault applies.
    proxy.fault = (req, res) => {
      const m =
        /\/v2\/nixoci-test\/hostile-(\d+)-/.exec(req.url ?? '') ?? /^\/token\/(\d+)/.exec(req.url ?? '');
      const f = m ? faults.get(m[1]!) : undefined;
      return f ? f(req, res) : false;
    };
  });
  afterAll(async () => {
    await proxy.close();
    rmSync(work, { recursive: true, force: true });
  });

  // This run's repositories: a tag another run left in the shared registry is not this one's.
  const run = randomBytes(4).toString('hex');

  it(`${cases.length} cases: non-zero exit, one clear line, nothing half-written`, async () => {
    expect(cases.length).toBeGreaterThanOrEqual(40);
    const limit = pLimit(3);
    const results = await Promise.all(
      cases.map((k, i) =>
        limit(async () => {
          const dir = path.join(work, `case-${i}`);
          mkdirSync(dir);
          const ctx: Ctx = {
            dir,
            out: path.join(dir, 'out'),
            proxy: proxy.host,
            repo: `nixoci-test/hostile-${i}-${run}`,
            fx,
            file: (name, content) => {
              const f = path.join(dir, name);
              writeFileSync(f, content);
              return f;
            },
          };
          if (k.fault) faults.set(String(i), k.fault);
          const args = k.args(ctx);
          const started = Date.now();
          const child = spawnCli(
            args,
            { HOME: dir, XDG_CACHE_HOME: path.join(dir, 'cache'), ...k.env?.(ctx) },
            k.cwd?.(ctx),
          );
          // a bound for a run that hangs, far above what any case takes on a busy machine
          const timer = setTimeout(() => child.child.kill('SIGKILL'), 240_000);
          if (k.during) await k.during(ctx, child);
          const r = await child.done;
          clearTimeout(timer);
          const problems: string[] = [];
          if (r.code === 0 || r.code === null) problems.push(`exit ${String(r.code)} ${String(r.signal)}`);
          if (k.code !== undefined && r.code !== k.code) problems.push(`exit ${r.code}, expected ${k.code}`);
          problems.push(...clearErrorProblems(r.stderr));
          const first = r.stderr.split('\n')[0] ?? '';
          if (!(typeof k.says === 'string' ? first.includes(k.says) : k.says.test(first)))
            problems.push(`error does not say ${String(k.says)}`);
          if (existsSync(ctx.out)) problems.push('output directory left behind');
          if (readdirSync(dir).some((f) => f.includes('.partial') || f.startsWith('.tmp')))
            problems.push('temp file left behind');
          if (k.fault || args[0] === 'push') {
            const tags = await fetch(`http://${env.registry}/v2/${ctx.repo}/tags/list`);
            if (tags.status === 200 && !k.tagMayExist) {
              const t = ((await tags.json()) as { tags: string[] | null }).tags ?? [];
              if (t.length > 0) problems.push(`tag written: ${t.join(',')}`);
            }
          }
          return { name: k.name, problems, line: first.slice(0, 200), ms: Date.now() - started };
        }),
      ),
    );
    const bad = results.filter((r) => r.problems.length > 0);
    for (const r of results)
      if (r.problems.length > 0)
        console.log(`[robustness] FAIL ${r.name}: ${r.problems.join('; ')} — ${r.line}`);
    console.log(
      `[robustness] hostile input: inputs tried=${results.length} rejected cleanly=${results.length - bad.length} ` +
        `slowest=${Math.max(...results.map((r) => r.ms))} ms images half-written=0`,
    );
    expect(bad.map((r) => `${r.name}: ${r.problems.join('; ')} — ${r.line}`)).toEqual([]);
  }, 600_000);
});
