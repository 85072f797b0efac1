import { bashScript, fishScript, zshScript, type CommandInfo } from '../completion-scripts.js';
import { outputOptions, parseFlags, usage } from '../flags.js';
import { COMMANDS } from '../help.js';
import { imageCommandOptions, type ImageCommandSpec } from '../image-command.js';
import type { Io } from '../output.js';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;

export const COMPLETION_HELP = `Usage: nixoci completion bash|zsh|fish

Print a shell completion script for nixoci's commands, flags and flag values. It is generated from
the flags the commands parse, so it is never out of date with the installed nixoci.

  bash   source <(nixoci completion bash)       or save as ~/.local/share/bash-completion/completions/nixoci
  zsh    source <(nixoci completion zsh)        or save as _nixoci in a directory of $fpath
  fish   nixoci completion fish | source        or save as ~/.config/fish/completions/nixoci.fish

  -h, --help                    this help
`;

/** Every command with its flags and help (loaded here, not at start-up). */
export async function commandInfos(): Promise<CommandInfo[]> {
  const summary = new Map(COMMANDS);
  const image = (spec: ImageCommandSpec): CommandInfo => ({
    name: spec.name,
    summary: summary.get(spec.name) ?? '',
    options: imageCommandOptions(spec),
    help: spec.help,
  });
  const { buildCommand } = await import('./build.js');
  const { pushCommand } = await import('./push.js');
  const { loadCommand } = await import('./load.js');
  const { inspectOptions, INSPECT_HELP } = await import('./inspect.js');
  const { diffOptions, DIFF_HELP } = await import('./diff.js');
  const { loginOptions, LOGIN_HELP, logoutOptions, LOGOUT_HELP } = await import('./login.js');
  const infos: CommandInfo[] = [
    image(buildCommand),
    image(pushCommand),
    image(loadCommand),
    { name: 'inspect', summary: summary.get('inspect') ?? '', options: inspectOptions, help: INSPECT_HELP },
    {
      name: 'diff',
      summary: summary.get('diff') ?? '',
      options: diffOptions,
      help: DIFF_HELP,
      values: { arch: ['amd64', 'arm64'] }, // one platform of each image, not a list
    },
    { name: 'login', summary: summary.get('login') ?? '', options: loginOptions, help: LOGIN_HELP },
    { name: 'logout', summary: summary.get('logout') ?? '', options: logoutOptions, help: LOGOUT_HELP },
    {
      name: 'completion',
      summary: summary.get('completion') ?? '',
      options: { help: outputOptions.help },
      help: COMPLETION_HELP,
      positionals: SHELLS,
    },
  ];
  const names = infos.map((i) => i.name);
  infos.push({ name: 'help', summary: summary.get('help') ?? '', options: {}, help: '', positionals: names });
  return infos;
}

export async function completionCommand(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parseFlags('completion', argv, { help: outputOptions.help });
  if (values.help) {
    io.out(COMPLETION_HELP);
    return 0;
  }
  const shell = positionals[0];
  if (positionals.length !== 1 || !SHELLS.includes(shell as (typeof SHELLS)[number]))
    throw usage('completion', `give one shell: ${SHELLS.join(', ')}`);
  const infos = await commandInfos();
  io.out(shell === 'bash' ? bashScript(infos) : shell === 'zsh' ? zshScript(infos) : fishScript(infos));
  return 0;
}
