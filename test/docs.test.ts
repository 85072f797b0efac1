// docs/cli.md is generated from the CLI's own --help (scripts/gen-cli-docs.mjs); it must not go stale.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMANDS, HELP_IMAGE_FLAGS } from '../src/cli/help.js';
import { repoRoot } from './helpers/env.js';

describe('docs/cli.md', () => {
  const generated = execFileSync(
    process.execPath,
    [join(repoRoot, 'scripts', 'gen-cli-docs.mjs'), '--stdout'],
    {
      encoding: 'utf8',
    },
  );

  it('is what scripts/gen-cli-docs.mjs generates from the built CLI', () => {
    const committed = readFileSync(join(repoRoot, 'docs', 'cli.md'), 'utf8');
    if (committed !== generated) {
      expect.fail(
        'docs/cli.md is stale: run `npm run build && node scripts/gen-cli-docs.mjs` and commit the result',
      );
    }
  });

  it('names the --user forms the flag takes (USER:GROUP with names is refused)', () => {
    expect(HELP_IMAGE_FLAGS).toMatch(/^ {2}--user UID\[:GID\]\|NAME +User /m);
  });

  it('has a section for every command', () => {
    for (const [name] of COMMANDS) if (name !== 'help') expect(generated).toContain(`## nixoci ${name}\n`);
  });
});
