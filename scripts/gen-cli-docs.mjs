#!/usr/bin/env node
// Writes docs/cli.md, the CLI reference, from the built CLI's own help: `nixoci --help` and
// `nixoci COMMAND --help` for every command it lists. Run after `npm run build`:
//   node scripts/gen-cli-docs.mjs            write docs/cli.md
//   node scripts/gen-cli-docs.mjs --stdout   print it (test/docs.test.ts compares it with the file)
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'bin', 'nixoci.js');

const help = (...args) =>
  execFileSync(process.execPath, [bin, ...args, '--help'], {
    encoding: 'utf8',
    env: { ...process.env, COLUMNS: '100' },
  });

/** The command names of `nixoci --help`'s "Commands:" section (`help` itself aside). */
function commands(main) {
  const lines = main.split('\n');
  const start = lines.indexOf('Commands:');
  if (start < 0) throw new Error('nixoci --help has no "Commands:" section');
  const names = [];
  for (const line of lines.slice(start + 1)) {
    const m = /^ {2}([a-z][a-z-]*) /.exec(line);
    if (!m) break;
    if (m[1] !== 'help') names.push(m[1]);
  }
  return names;
}

export function generate() {
  const main = help();
  const block = (text) => '```text\n' + text.trimEnd() + '\n```\n';
  const parts = [
    '# nixoci CLI reference\n',
    'Generated from the code by `node scripts/gen-cli-docs.mjs` (after `npm run build`); do not edit by',
    'hand: `test/docs.test.ts` fails when this file is out of date. `--json` reports are described in',
    '[json.md](json.md); shell completion: `nixoci completion bash|zsh|fish`.\n',
    '## nixoci\n',
    block(main),
  ];
  for (const c of commands(main)) parts.push(`## nixoci ${c}\n`, block(help(c)));
  return parts.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const text = generate();
  if (process.argv.includes('--stdout')) process.stdout.write(text);
  else {
    writeFileSync(join(root, 'docs', 'cli.md'), text);
    console.error('wrote docs/cli.md');
  }
}
