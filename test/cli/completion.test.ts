// `nixoci completion bash|zsh|fish`: scripts generated from the commands' flag specs.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildCommand } from '../../src/cli/commands/build.js';
import { imageCommandOptions } from '../../src/cli/image-command.js';
import { nixoci } from '../helpers/cli.js';

const work = mkdtempSync(join(tmpdir(), 'nixoci-completion-'));
const has = (shell: string): boolean => spawnSync(shell, ['--version'], { stdio: 'ignore' }).status === 0;
const buildFlags = Object.keys(imageCommandOptions(buildCommand));

async function script(shell: string): Promise<string> {
  const r = await nixoci(['completion', shell]);
  expect(r.code).toBe(0);
  const file = join(work, `nixoci.${shell}`);
  writeFileSync(file, r.stdout);
  return file;
}

/** Runs the bash completion function for a command line (the last word is being completed). */
function bashComplete(file: string, words: string[]): string[] {
  const out = execFileSync(
    'bash',
    [
      '-c',
      `source "$0"; COMP_WORDS=("\${@}"); COMP_CWORD=$(( $# - 1 )); _nixoci; printf '%s\\n' "\${COMPREPLY[@]}"`,
      file,
      ...words,
    ],
    { encoding: 'utf8' },
  );
  return out.split('\n').filter((l) => l !== '');
}

describe('nixoci completion', () => {
  it('bash: valid syntax, registered for nixoci, completes commands, flags and flag values', async () => {
    const file = await script('bash');
    execFileSync('bash', ['-n', file]);
    expect(
      execFileSync('bash', ['-c', 'source "$0"; complete -p nixoci', file], { encoding: 'utf8' }),
    ).toContain('-F _nixoci nixoci');
    expect(bashComplete(file, ['nixoci', 'di'])).toEqual(['diff']);
    expect(bashComplete(file, ['nixoci', 'build', '--compr'])).toEqual([
      '--compression',
      '--compression-level',
    ]);
    expect(bashComplete(file, ['nixoci', 'push', '--compression', ''])).toEqual(['none', 'gzip', 'zstd']);
    expect(bashComplete(file, ['nixoci', 'inspect', '--insec'])).toEqual(['--insecure-registry']);
    expect(bashComplete(file, ['nixoci', 'completion', 'z'])).toEqual(['zsh']);
    // completion and help take one word: not offered again after it
    expect(bashComplete(file, ['nixoci', 'completion', 'bash', ''])).toEqual([]);
    expect(bashComplete(file, ['nixoci', 'help', 'build', ''])).toEqual([]);
    expect(bashComplete(file, ['nixoci', '--v'])).toEqual(['--version']);
    // --compression=<TAB> and --compression=z<TAB>, as bash splits them at '='
    expect(bashComplete(file, ['nixoci', 'build', '--compression', '='])).toEqual(['none', 'gzip', 'zstd']);
    expect(bashComplete(file, ['nixoci', 'build', '--compression', '=', 'z'])).toEqual(['zstd']);
    // diff reads one platform of each image: no list offered there, as build and inspect take
    expect(bashComplete(file, ['nixoci', 'diff', '--arch', ''])).toEqual(['amd64', 'arm64']);
    expect(bashComplete(file, ['nixoci', 'inspect', '--arch', ''])).toEqual([
      'amd64',
      'arm64',
      'amd64,arm64',
    ]);
    expect(bashComplete(file, ['nixoci', 'diff', '--compression', ''])).toEqual([]);
    // a flag whose value cannot be guessed offers no flags as its value
    expect(bashComplete(file, ['nixoci', 'build', '--entrypoint', '--'])).toEqual([]);
  });

  it('zsh and fish: every flag of build, and valid syntax where the shell is installed', async () => {
    const zsh = await script('zsh');
    const fish = await script('fish');
    const zshText = execFileSync('cat', [zsh], { encoding: 'utf8' });
    const fishText = execFileSync('cat', [fish], { encoding: 'utf8' });
    const zshBuild = zshText.slice(zshText.indexOf('    build)'), zshText.indexOf('    push)'));
    expect(buildFlags.length).toBeGreaterThan(30);
    // a flag whose synopsis fills the flag column has its description on the next help line
    expect(fishText).toContain(
      `__nixoci_command_is build' -l annotation -x -d 'annotation (repeatable) of each platform\\'s manifest (manifest`,
    );
    expect(zshBuild).toContain(
      `'*--annotation=[annotation (repeatable) of each platform'\\''s manifest (manifest`,
    );
    // wrapped help lines are joined, up to the end of the first clause, at most 90 characters
    expect(fishText).toContain(
      `__nixoci_command_is build' -l stop-signal -x -d 'StopSignal, the signal \`docker stop\` sends'\n`,
    );
    expect(fishText).toContain(
      `__nixoci_command_is build' -l cmd -x -d 'Cmd: a JSON array or a space-separated string (no quotes)'\n`,
    );
    for (const line of fishText.split('\n').filter((l) => l.includes(' -d '))) {
      expect(line.slice(line.indexOf(" -d '") + 5).length, line).toBeLessThanOrEqual(96);
    }
    for (const f of buildFlags) {
      expect(zshBuild).toMatch(new RegExp(`'\\*?--${f}[=\\[':]`));
      expect(fishText).toContain(`-n '__nixoci_command_is build'`);
      expect(fishText).toMatch(new RegExp(`__nixoci_command_is build'( -s \\w)? -l ${f}( |$)`, 'm'));
    }
    if (has('zsh')) {
      execFileSync('zsh', ['-n', zsh]);
      // TAB in an interactive zsh (a pseudo-terminal from zsh/zpty), after a space: the values, not '-'
      const drive = join(dirname(zsh), 'drive.zsh');
      writeFileSync(
        drive,
        [
          'zmodload zsh/zpty',
          'zpty z zsh -f -i',
          `zpty -w z "PS1='> '; autoload -Uz compinit; compinit -u -D; source ${zsh}; LISTMAX=1000"`,
          "zpty -w z \"nixoci $1\"$'\\t'$'\\t'",
          // Reads until the listing ($2, a regex) has come, however slow a busy machine is; the
          // bound only ends a zsh that never lists it (the test then shows what it printed).
          "local all='' chunk",
          'integer end=$(( SECONDS + 90 ))',
          "while [[ ! ${all//$'\\r'/} =~ $2 ]] && (( SECONDS < end )); do",
          '  if zpty -r -t z chunk; then all+=$chunk; else sleep 0.05; fi',
          'done',
          'print -r -- "$all" | tr -d \'\\r\'',
          'zpty -d z',
        ].join('\n'),
      );
      const tab = (line: string, listing: string): string =>
        execFileSync('zsh', ['-f', drive, line, listing], { encoding: 'utf8' });
      const listed = (line: string, listing: RegExp): void =>
        expect(tab(line, listing.source)).toMatch(listing);
      listed('build --compression ', /gzip +none +zstd/);
      listed('completion ', /bash +fish +zsh/);
    }
    if (has('fish')) {
      execFileSync('fish', ['--no-execute', fish]);
      const out = execFileSync('fish', ['-c', `source ${fish}; complete -C "nixoci build --compression "`], {
        encoding: 'utf8',
      });
      expect(out.split('\n').map((l) => l.split('\t')[0])).toEqual(
        expect.arrayContaining(['none', 'gzip', 'zstd']),
      );
      // arguments complete as files, as in bash and zsh
      writeFileSync(join(work, 'layout-marker'), '');
      const files = execFileSync(
        'fish',
        ['-c', `source ${fish}; complete -C "nixoci inspect ${work}/layout-m"`],
        {
          encoding: 'utf8',
        },
      );
      expect(files.split('\n')[0]).toBe(`${work}/layout-marker`);
      // `nixoci help build` is not `nixoci build`: no build flags there; one shell, not two
      const fishComplete = (line: string): string =>
        execFileSync('fish', ['-c', `source ${fish}; complete -C "${line}"`], { encoding: 'utf8' });
      expect(fishComplete('nixoci help build -')).toBe('');
      expect(fishComplete('nixoci completion bash ')).toBe('');
      expect(fishComplete('nixoci build -')).toContain('--graph');
      expect(fishComplete('nixoci help ')).toContain('build');
      expect(
        fishComplete('nixoci diff --arch ')
          .split('\n')
          .map((l) => l.split('\t')[0]),
      ).toEqual(['amd64', 'arm64', '']);
    }
  }, 240_000);

  it('refuses an unknown shell with a usage error', async () => {
    const r = await nixoci(['completion', 'tcsh']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('give one shell: bash, zsh, fish');
  });
});
