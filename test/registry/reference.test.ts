import { describe, expect, it } from 'vitest';
import { isNixociError } from '../../src/core/errors.js';
import {
  formatReference,
  isLoopbackHost,
  parseImageReference,
  parseReference,
} from '../../src/registry/reference.js';
import { parseChallenges } from '../../src/registry/auth/challenge.js';
import { retryAfterMs } from '../../src/registry/retry.js';
import { DEFAULT_RETRY } from '../../src/registry/transport.js';

const D = `sha256:${'ab'.repeat(32)}`;

describe('parseReference', () => {
  const table: [
    string,
    { registry: string; host: string; repository: string; tag?: string; digest?: string },
  ][] = [
    [
      'alpine',
      { registry: 'docker.io', host: 'registry-1.docker.io', repository: 'library/alpine', tag: 'latest' },
    ],
    [
      'docker://alpine:3.20',
      { registry: 'docker.io', host: 'registry-1.docker.io', repository: 'library/alpine', tag: '3.20' },
    ],
    [
      'org/app',
      { registry: 'docker.io', host: 'registry-1.docker.io', repository: 'org/app', tag: 'latest' },
    ],
    [
      'docker.io/org/app:v1',
      { registry: 'docker.io', host: 'registry-1.docker.io', repository: 'org/app', tag: 'v1' },
    ],
    [
      'index.docker.io/app',
      { registry: 'docker.io', host: 'registry-1.docker.io', repository: 'library/app', tag: 'latest' },
    ],
    [
      'ghcr.io/org/team/app:v1.2_3-x',
      { registry: 'ghcr.io', host: 'ghcr.io', repository: 'org/team/app', tag: 'v1.2_3-x' },
    ],
    [
      'docker://127.0.0.1:5000/app',
      { registry: '127.0.0.1:5000', host: '127.0.0.1:5000', repository: 'app', tag: 'latest' },
    ],
    ['localhost/app:dev', { registry: 'localhost', host: 'localhost', repository: 'app', tag: 'dev' }],
    [
      'localhost:5000/a/b',
      { registry: 'localhost:5000', host: 'localhost:5000', repository: 'a/b', tag: 'latest' },
    ],
    ['[::1]:5000/app', { registry: '[::1]:5000', host: '[::1]:5000', repository: 'app', tag: 'latest' }],
    [
      'Registry.Example.COM/app',
      { registry: 'registry.example.com', host: 'registry.example.com', repository: 'app', tag: 'latest' },
    ],
    [`ghcr.io/org/app@${D}`, { registry: 'ghcr.io', host: 'ghcr.io', repository: 'org/app', digest: D }],
    [
      `ghcr.io/org/app:v1@${D}`,
      { registry: 'ghcr.io', host: 'ghcr.io', repository: 'org/app', tag: 'v1', digest: D },
    ],
    ['a.b/x__y/z-1.2', { registry: 'a.b', host: 'a.b', repository: 'x__y/z-1.2', tag: 'latest' }],
    ['dir:5000/app', { registry: 'dir:5000', host: 'dir:5000', repository: 'app', tag: 'latest' }],
    [
      'podman:v1',
      { registry: 'docker.io', host: 'registry-1.docker.io', repository: 'library/podman', tag: 'v1' },
    ],
    [
      'localhost:5000',
      { registry: 'docker.io', host: 'registry-1.docker.io', repository: 'library/localhost', tag: '5000' },
    ],
  ];
  it.each(table)('%s', (input, want) => {
    expect(parseReference(input)).toEqual(want);
  });

  const bad: [string, RegExp][] = [
    ['', /empty/],
    ['docker://', /empty/],
    ['oci:/tmp/x', /"oci:\/tmp\/x" is invalid: oci: is not a registry/],
    ['docker://oci:./dir:v1', /oci: is not a registry/],
    ['docker-archive:/tmp/a.tar', /docker-archive: is not a registry/],
    ['docker-daemon:app:v1', /docker-daemon: is not a registry/],
    ['http://ghcr.io/app', /"http:\/\/ghcr.io\/app" is invalid: a registry reference has no http:\/\//],
    ['docker://https://127.0.0.1:5000/app', /a registry reference has no https:\/\//],
    ['ftp://ghcr.io/app', /unsupported transport ftp:\/\//],
    ['ghcr.io/Org/App', /lowercase/],
    ['ghcr.io/app:', /tag "" is invalid/],
    ['ghcr.io/app:-x', /tag "-x" is invalid/],
    ['ghcr.io/app@sha256:abc', /not a sha256 digest/],
    ['ghcr.io/app@md5:' + 'a'.repeat(32), /not a sha256 digest/],
    ['ghcr.io//app', /component "" is invalid/],
    ['ghcr.io/app_/x', /component "app_" is invalid/],
    ['host:99999/app', /port "99999" is invalid/],
    ['-bad.io/app', /host "-bad.io" is invalid/],
    ['ghcr.io/a b', /whitespace/],
    [
      'docker://me:s3cret@ghcr.io/org/app:v1',
      /"docker:\/\/\*\*\*@ghcr.io\/org\/app:v1" is invalid: credentials/,
    ],
    ['me@ghcr.io/org/app', /"\*\*\*@ghcr.io\/org\/app" is invalid: credentials/],
    [`ghcr.io/${'a'.repeat(260)}`, /longer than 255/],
  ];
  it('gives the whole reference to type when the repository has upper-case letters', () => {
    for (const [input, want] of [
      ['ghcr.io/Org/App:v1', 'ghcr.io/org/app:v1'],
      ['docker://127.0.0.1:5000/Team/HX:V1', 'docker://127.0.0.1:5000/team/hx:V1'],
      ['Library/Ubuntu@sha256:' + 'a'.repeat(64), 'library/ubuntu@sha256:' + 'a'.repeat(64)],
    ]) {
      expect(() => parseReference(input!)).toThrow(
        expect.objectContaining({ hint: `use ${JSON.stringify(want)}` }) as Error,
      );
    }
  });

  it.each(bad)('rejects %j', (input, why) => {
    let err: unknown;
    try {
      parseReference(input);
    } catch (e) {
      err = e;
    }
    if (input === 'oci:/tmp/x') {
      // Not a transport URL: parsed as Docker Hub name "oci" with tag "/tmp/x", which is invalid.
      expect(isNixociError(err)).toBe(true);
      return;
    }
    expect(isNixociError(err) && err.code).toBe('REFERENCE_INVALID');
    expect((err as Error).message).toMatch(why);
    expect((err as { hint?: string }).hint).toBeTruthy();
  });

  it('never echoes a password written into a reference, whatever else is wrong with it', () => {
    for (const [input, shown] of [
      ['https://me:s3cret@127.0.0.1:5000/app', 'https://***@127.0.0.1:5000/app'],
      ['docker://https://me:s3cret@ghcr.io/org/app:v1', 'docker://https://***@ghcr.io/org/app:v1'],
      ['ftp://me:s3cret@ghcr.io/app', 'ftp://***@ghcr.io/app'],
      ['oci:me:s3cret@ghcr.io/app', '***@ghcr.io/app'],
      ['me:p@ss:s3cret@ghcr.io/App:Bad Tag', '***@ghcr.io/App:Bad Tag'],
      // a password with a / in it (base64 tokens, cloud secrets): its @ comes after the first /
      ['me:s3/cret@127.0.0.1:5000/app:v1', '***@127.0.0.1:5000/app:v1'],
      ['https://me:s3/cret@ghcr.io/org/app', 'https://***@ghcr.io/org/app'],
      ['docker://me:s3/cr@t@ghcr.io/app', 'docker://***@ghcr.io/app'],
      ['me:s3/cret@ghcr.io', '***@ghcr.io'],
      ['me:s3/cret@localhost:5000', '***@localhost:5000'],
    ]) {
      let err: unknown;
      try {
        parseReference(input!);
      } catch (e) {
        err = e;
      }
      expect(isNixociError(err) && err.code).toBe('REFERENCE_INVALID');
      expect((err as Error).message).toBe(
        `image reference ${JSON.stringify(shown)} is invalid: credentials do not go in an image reference`,
      );
      expect(JSON.stringify(err)).not.toContain('s3cret');
    }
    // a digest's @ comes after the first /, and no / nor registry host comes after it
    expect(parseReference(`ghcr.io/org/app@${D}`).digest).toBe(D);
    expect(parseReference(`127.0.0.1:5000/org/app:v1.2@${D}`).digest).toBe(D);
    expect(() => parseReference('ghcr.io/app@sha256:abc')).toThrow(/is not a sha256 digest/);
  });

  it('formats canonically', () => {
    expect(formatReference(parseReference('alpine'))).toBe('docker.io/library/alpine:latest');
    expect(formatReference(parseReference(`127.0.0.1:5000/a:v@${D}`))).toBe(`127.0.0.1:5000/a:v@${D}`);
  });

  it('knows loopback hosts', () => {
    for (const h of ['127.0.0.1:5000', '127.1.2.3', 'localhost', 'localhost:80', '[::1]:5000'])
      expect(isLoopbackHost(h)).toBe(true);
    for (const h of ['ghcr.io', '10.0.0.1:5000', 'localhost.example.com', '128.0.0.1'])
      expect(isLoopbackHost(h)).toBe(false);
  });
});

describe('parseChallenges', () => {
  it('parses bearer with quoted commas and several challenges', () => {
    const c = parseChallenges(
      'Bearer realm="https://auth.io/token",service="reg, x",scope="repository:a/b:pull,push", Basic realm="q\\"r"',
    );
    expect(c).toEqual([
      {
        scheme: 'bearer',
        params: { realm: 'https://auth.io/token', service: 'reg, x', scope: 'repository:a/b:pull,push' },
      },
      { scheme: 'basic', params: { realm: 'q"r' } },
    ]);
  });
  it('parses unquoted values and bare schemes', () => {
    expect(parseChallenges('Basic realm=foo')).toEqual([{ scheme: 'basic', params: { realm: 'foo' } }]);
    expect(parseChallenges('Negotiate')).toEqual([{ scheme: 'negotiate', params: {} }]);
    expect(parseChallenges(null)).toEqual([]);
  });
});

describe('retryAfterMs', () => {
  it('reads seconds and dates, caps long waits', () => {
    expect(retryAfterMs('2', DEFAULT_RETRY)).toBe(2000);
    expect(retryAfterMs(new Date(10_000).toUTCString(), DEFAULT_RETRY, 5_000)).toBe(5000);
    expect(retryAfterMs('99999', DEFAULT_RETRY)).toBe(DEFAULT_RETRY.maxRetryAfterMs);
    expect(retryAfterMs('soon', DEFAULT_RETRY)).toBeUndefined();
  });
});

describe('parseImageReference', () => {
  it('refuses a registry without a repository, which docker would read as a Docker Hub image', () => {
    for (const [input, host] of [
      ['localhost:5000', 'localhost:5000'],
      ['docker://127.0.0.1:5000', '127.0.0.1:5000'],
      ['ghcr.io:443', 'ghcr.io:443'],
    ] as const) {
      let err: unknown;
      try {
        parseImageReference(input);
      } catch (e) {
        err = e;
      }
      expect(isNixociError(err) && err.message, input).toBe(
        `image reference ${JSON.stringify(input)} is invalid: it names a registry, not a repository`,
      );
      expect(isNixociError(err) && err.hint).toMatch(
        new RegExp(`^write ${host.replace(/\./g, '\\.')}/REPO\\[:TAG\\]`),
      );
    }
  });

  it('parses everything else as parseReference does', () => {
    for (const input of ['localhost:5000/app', 'app:5000', 'ubuntu:22.04', `ghcr.io/org/app@${D}`, 'a.b/c:1'])
      expect(parseImageReference(input)).toEqual(parseReference(input));
  });
});
