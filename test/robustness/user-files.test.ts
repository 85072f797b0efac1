// Files the user names that are not what they seem (a FIFO where a file is read).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
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
