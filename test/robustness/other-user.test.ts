// nixoci run as an unprivileged user (test/helpers/other-user.ts), as on CI runners and laptops,
// against files and sockets of another user: what it says must name the file and what to do.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testEnv } from '../helpers/env.js';
import { buildFixtureClosure, type FixtureClosure } from '../helpers/nix.js';
import { OTHER_GID, otherUser, type OtherUser } from '../helpers/other-user.js';
import { FakeStore } from './fake-store.js';

const env = testEnv();
let fx: FixtureClosure;
let user: OtherUser;

beforeAll(async () => {
  fx = await buildFixtureClosure({ tag: 'hx-nonroot' });
  user = otherUser('hx-nonroot-');
}, 300_000);
afterAll(() => user?.remove());

/** A unix socket listening in a fresh dir under the user's dir, given `uid:gid` and `mode`. */
async function socketAt(name: string, uid: number, gid: number, mode: number): Promise<[string, Server]> {
  const dir = path.join(user.dir, name);
  mkdirSync(dir, { mode: 0o755 });
  const sock = path.join(dir, 'engine.sock');
  const server = createServer((c) => c.destroy());
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  chownSync(sock, uid, gid);
  chmodSync(sock, mode);
  return [sock, server];
}

const load = (sock: string): ReturnType<OtherUser['run']> =>
  user.run(['load', '--graph', fx.graphFile, '--host', `unix://${sock}`, 'hx-nonroot-load:v1']);

/** A group of this machine the unprivileged user is not in, as getent names it. */
function someOtherGroup(): { name: string; gid: number } {
  for (const line of execFileSync('getent', ['group'], { encoding: 'utf8' }).split('\n')) {
    const [name, , gid] = line.split(':');
    const n = Number(gid);
    if (name && n > 0 && n !== OTHER_GID) return { name, gid: n };
  }
  throw new Error('no group other than root and nogroup in getent group');
}

/** A gid no group of this machine has. */
function unnamedGid(): number {
  const taken = new Set(
    execFileSync('getent', ['group'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => Number(l.split(':')[2])),
  );
  let gid = 54_321;
  while (taken.has(gid)) gid++;
  return gid;
}

describe('as an unprivileged user', () => {
  it('names a docker config it cannot read, and the chown that fixes it, when the push is then refused', async () => {
    // What `sudo docker login` leaves behind: a root-owned 0600 config.json in the user's HOME.
    const docker = path.join(user.home, '.docker');
    mkdirSync(docker, { recursive: true });
    user.own(docker);
    const config = path.join(docker, 'config.json');
    const auth = Buffer.from(`${env.registryBasicUser}:${env.registryBasicPassword}`).toString('base64');
    writeFileSync(config, JSON.stringify({ auths: { [env.registryBasic]: { auth } } }), { mode: 0o600 });
    const r = await user.run(['push', '--graph', fx.graphFile, `${env.registryBasic}/hx-nonroot-auth:v1`]);
    expect(r.code, r.stderr).toBe(1);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^nixoci: error: push to .* failed: .*401/);
    expect(lines[1]).toBe(
      `hint: ${config} is not readable by this user (left by a login run with sudo?), so no credentials were sent: run \`sudo chown $USER ${config}\`, or pass --creds USER:PASSWORD`,
    );
    expect(r.stderr).not.toContain(env.registryBasicPassword);
  });

  it('says a root-only engine socket is root-only, not "add yourself to group docker"', async () => {
    const [sock, server] = await socketAt('root-only', 0, 0, 0o660);
    try {
      const r = await load(sock);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toBe(
        `nixoci: error: cannot connect to the Docker engine at unix://${sock}: permission denied\n` +
          `hint: ${sock} is usable by root only (owner root, group root, mode 0660): run nixoci as root, have the engine give the socket a group you are in (dockerd --group), or use a rootless engine\n`,
      );
    } finally {
      server.close();
    }
  });

  it("names the engine socket's own group in the hint", async () => {
    const group = someOtherGroup();
    const [sock, server] = await socketAt('group', 0, group.gid, 0o660);
    try {
      const r = await load(sock);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr.split('\n')[1]).toBe(
        `hint: ${sock} is open to group ${group.name}: add yourself to it (\`sudo usermod -aG ${group.name} $USER\`) and log in again, or use a rootless engine`,
      );
    } finally {
      server.close();
    }
  });

  it('says when the socket group has no name', async () => {
    const gid = unnamedGid();
    const [sock, server] = await socketAt('unnamed', 0, gid, 0o660);
    try {
      const r = await load(sock);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr.split('\n')[1]).toBe(
        `hint: ${sock} is open to group ${gid}, which has no name here: ask the admin to give that group a name and add you to it, or use a rootless engine`,
      );
    } finally {
      server.close();
    }
  });

  it("refuses, before building anything, a docker-archive over another user's file in a sticky dir", async () => {
    const sticky = path.join(user.dir, 'sticky');
    mkdirSync(sticky);
    chmodSync(sticky, 0o1777);
    const theirs = path.join(sticky, 'hx-nonroot-image.tar');
    writeFileSync(theirs, 'not yours\n', { mode: 0o666 });
    // A cache of its own (the other tests fill the user's), to see that no layer was made.
    const cache = path.join(user.home, 'sticky-cache');
    const r = await user.run(['build', '--graph', fx.graphFile, '--to', `docker-archive:${theirs}`], {
      env: { XDG_CACHE_HOME: cache },
    });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toBe(
      `nixoci: error: cannot write docker-archive:${theirs}: ${theirs} belongs to another user (uid 0), and ${sticky} is sticky: only its owner can replace it\n` +
        'hint: give another file name, or have its owner remove it\n',
    );
    // Nothing written: no partial archive beside it, no layer in the user's cache, the file kept.
    expect(readdirSync(sticky)).toEqual(['hx-nonroot-image.tar']);
    // (bin/nixoci.js keeps V8's compile cache there as it starts, before any work)
    const cached = existsSync(cache) ? readdirSync(cache, { recursive: true }).map(String) : [];
    expect(cached.filter((f) => f !== 'nixoci' && !f.startsWith('nixoci/v8'))).toEqual([]);
    expect(statSync(theirs).size).toBe(10);
  });

  it('names a store file it cannot read, and says the store path is not readable by this user', async () => {
    // Nix keeps store files readable by all; a fake store (NIX_STORE_DIR) holds one that is not.
    const store = new FakeStore(path.join(user.dir, 'fake'));
    let secret = '';
    const p = store.add('hx-nonroot-secret', (d) => {
      writeFileSync(path.join(d, 'readable'), 'ok\n');
      secret = path.join(d, 'key');
      writeFileSync(secret, 'root only\n', { mode: 0o400 });
    });
    const graph = store.graph(path.join(user.dir, 'fake', 'graph.json'));
    const out = path.join(user.home, 'secret-layout');
    const r = await user.run(['build', '--graph', graph, '--to', `oci:${out}:t`], { env: store.env });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toBe(
      `nixoci: error: cannot read ${secret} (mode 0400, owner root): permission denied\n` +
        `hint: the store path ${p} is not readable by this user (Nix keeps store files readable by all): run nixoci as a user that can read it, or restore its permissions (nix-store --repair-path)\n`,
    );
    expect(existsSync(out)).toBe(false);
  });
});
