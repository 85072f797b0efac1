import { describe, expect, it } from 'vitest';
import { dockerRmi, dockerRunOutput, docker } from '../helpers/docker.js';
import { nixociJson } from '../helpers/cli.js';
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
});
