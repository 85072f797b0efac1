// Files the user names that are not what they seem (a FIFO where a file is read), and files nixoci
// replaces (index.json, an archive), whose mode must survive the replacement under any umask.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nixoci } from '../helpers/cli.js';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';

const env = testEnv();
let fx: FixtureClosure;
let dir: string;

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'hx-nonroot' });
  dir = mkdtempSync(path.join(tmpdir(), 'hx-nonroot-files-'));
}, 300_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A FIFO nobody writes to, in a fresh dir: a blocking read of it would wait for ever. */
function fifo(name: string): string {
  const d = mkdtempSync(path.join(dir, 'fifo-'));
  const f = path.join(d, name);
  execFileSync('mkfifo', [f]);
  return f;
}

/** The CLI's answer must be one error line and a hint: no hang (the test's timeout), no stack. */
function expectRefused(r: { code: number; stderr: string }, error: string): void {
  expect(r.code, r.stderr).not.toBe(0);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines[0]).toBe(`nixoci: error: ${error}`);
  expect(lines).toHaveLength(2);
  expect(lines[1]).toMatch(/^hint: /);
}

describe('a FIFO where nixoci reads a file', () => {
  it('as the docker config (DOCKER_CONFIG) is refused, not waited on', async () => {
    const config = fifo('config.json');
    const r = await nixoci(['push', '--graph', fx.graphFile, `${env.registryBasic}/hx-nonroot-fifo:v1`], {
      env: { DOCKER_CONFIG: path.dirname(config), REGISTRY_AUTH_FILE: '', NIXOCI_REGISTRY_USER: '' },
    });
    expectRefused(r, `cannot read credentials from ${config}: not a regular file (a FIFO)`);
  }, 30_000);

  it('as --ca-file is refused, not waited on', async () => {
    const ca = fifo('ca.pem');
    const r = await nixoci([
      'push',
      '--graph',
      fx.graphFile,
      '--ca-file',
      ca,
      `${env.registryTls}/hx-nonroot-fifo:v1`,
    ]);
    expectRefused(r, `nixoci push: cannot read --ca-file ${ca}: not a regular file (a FIFO)`);
  }, 30_000);

  it('as devbox.json is refused, not waited on', async () => {
    const json = fifo('devbox.json');
    const r = await nixoci(['inspect', '--devbox', path.dirname(json)]);
    expectRefused(r, `cannot read ${json}: not a regular file (a FIFO)`);
  }, 30_000);

  it('as --graph is refused, not waited on', async () => {
    const graph = fifo('graph.json');
    const r = await nixoci(['build', '--graph', graph, '--to', `oci:${path.join(dir, 'unused')}:t`]);
    expectRefused(r, `${graph}: not a regular file`);
  }, 30_000);
});

describe('a replaced file keeps its mode under umask 077', () => {
  it('index.json of an OCI layout', async () => {
    const layout = path.join(dir, 'layout');
    const to = (tag: string): string[] => ['build', '--graph', fx.graphFile, '--to', `oci:${layout}:${tag}`];
    expect((await nixoci(to('one'))).code).toBe(0);
    const index = path.join(layout, 'index.json');
    chmodSync(index, 0o644);
    const r = await nixoci(to('two'), { umask: '077' });
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(index).mode & 0o7777).toBe(0o644);
  }, 120_000);

  it('a docker-archive', async () => {
    const out = path.join(dir, 'archive');
    mkdirSync(out);
    const archive = path.join(out, 'image.tar');
    const to = ['build', '--graph', fx.graphFile, '--to', `docker-archive:${archive}`];
    expect((await nixoci(to)).code).toBe(0);
    chmodSync(archive, 0o640);
    const r = await nixoci(to, { umask: '077' });
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(archive).mode & 0o7777).toBe(0o640);
  }, 120_000);
});
