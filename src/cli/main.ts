import { setMaxListeners } from 'node:events';
import { diskFullHint, fileLimitHint, isNixociError } from '../core/errors.js';
import { escapeControls } from '../core/escape-controls.js';
import { buildCommand } from './commands/build.js';
import { HELP_MAIN } from './help.js';
import { runImageCommand, type ImageCommandSpec } from './image-command.js';
import { processIo, STOP_SIGNALS, type Io } from './output.js';
import { nearest } from './suggest.js';

/** package.json's version, put in by scripts/bundle.mjs (unset when run from the sources). */
declare const __NIXOCI_VERSION__: string | undefined;

/** For bin/nixoci.js, which writes the V8 code cache with them after the command. */
export { makeDirs } from '../core/make-dirs.js';
export { removeStaleFiles } from '../core/stale-files.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTERRUPTED = 130;

/** The commands besides the image commands, for "did you mean". */
const OTHER_COMMANDS = ['inspect', 'diff', 'completion', 'help', 'version'];

const imageCommands: Record<string, () => Promise<ImageCommandSpec>> = {
  build: async () => buildCommand,
  load: async () => (await import('./commands/load.js')).loadCommand,
  push: async () => (await import('./commands/push.js')).pushCommand,
};

/** Runs the CLI and returns the exit code; never throws, never prints a stack trace. */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const controller = new AbortController();
  // Every concurrent exchange, job and wait of the run listens to this one signal (up to
  // --concurrency 64 uploads at once): more than Node's default of 10 is no leak.
  setMaxListeners(0, controller.signal);
  // SIGHUP too (the terminal or SSH session closed): left to Node's default it ended the process at
  // once, with nix-build still running, upload sessions open and temp files left behind. The first
  // signal starts the winding down; any second one (Ctrl-C again, a SIGTERM after the SIGINT) meets
  // Node's default and ends the process at once.
  const onSignal = (): void => {
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
    controller.abort();
    // Winding down can take seconds (upload sessions cancelled, an engine's answer awaited to
    // remove what it took in): on a terminal, say so at once, after the progress bars are cleared
    // (their own handler runs next), so that the run does not look as if it ignored the key.
    if (io.isTTY)
      setImmediate(() => io.err('nixoci: stopping: cancelling what was started (again to end at once)\n'));
  };
  for (const s of STOP_SIGNALS) process.on(s, onSignal);
  try {
    return await dispatch(argv, io, controller.signal);
  } catch (e) {
    if (controller.signal.aborted) {
      io.err('nixoci: interrupted\n');
      return EXIT_INTERRUPTED;
    }
    // Out of file descriptors or of disk space: whatever failed, these say what to do better than a
    // hint written for other causes.
    const outOf = fileLimitHint(e) ?? diskFullHint(e);
    if (isNixociError(e)) {
      io.err(`nixoci: error: ${printable(e.message)}\n`);
      const hint = outOf ?? e.hint;
      if (hint) io.err(`hint: ${printable(hint)}\n`);
      return e.code === 'USAGE' ? EXIT_USAGE : e.code === 'ABORTED' ? EXIT_INTERRUPTED : EXIT_FAILURE;
    }
    const msg = printable(e instanceof Error ? (e.message.split('\n')[0] ?? '') : String(e));
    if (outOf) {
      // not a bug: the limit was reached wherever the next open or write happened to be
      io.err(`nixoci: error: ${msg}\nhint: ${outOf}\n`);
      return EXIT_FAILURE;
    }
    io.err(
      `nixoci: internal error: ${msg}\nhint: this is a bug in nixoci; please report it with the command you ran\n`,
    );
    if (process.env.NIXOCI_DEBUG) io.err(`${(e as Error).stack ?? ''}\n`);
    return EXIT_FAILURE;
  } finally {
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
  }
}

/**
 * A message or hint for the terminal: it may quote an image's tags or platforms, a server's answer,
 * a file name; their control characters (all but line breaks) are escaped, never sent as they are.
 */
function printable(s: string): string {
  return escapeControls(s, (c) => (c === '\n' ? c : undefined));
}

async function dispatch(argv: readonly string[], io: Io, signal: AbortSignal): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help') {
    io.out(HELP_MAIN);
    return command === undefined ? EXIT_USAGE : EXIT_OK;
  }
  // `nixoci help build x`, `nixoci --version --json`: the rest was ignored with exit 0
  if (
    (command === '--version' || command === 'version' || command === 'help') &&
    rest.length > (command === 'help' ? 1 : 0)
  ) {
    io.err(
      `nixoci: error: unexpected argument ${JSON.stringify(rest[command === 'help' ? 1 : 0])} after ${command}\nhint: run \`nixoci --help\` for usage\n`,
    );
    return EXIT_USAGE;
  }
  if (command === '--version' || command === 'version') {
    io.out(`nixoci ${typeof __NIXOCI_VERSION__ === 'string' ? __NIXOCI_VERSION__ : 'dev'}\n`);
    return EXIT_OK;
  }
  if (command === 'help') return dispatch(rest.length > 0 ? [rest[0]!, '--help'] : ['--help'], io, signal);
  const image = imageCommands[command];
  if (image) return runImageCommand(await image(), rest, io, signal);
  if (command === 'inspect') {
    const { inspectCommand } = await import('./commands/inspect.js');
    return inspectCommand(rest, io, signal);
  }
  if (command === 'diff') {
    const { diffCommand } = await import('./commands/diff.js');
    return diffCommand(rest, io, signal);
  }
  if (command === 'login' || command === 'logout') {
    const { loginCommand, logoutCommand } = await import('./commands/login.js');
    return (command === 'login' ? loginCommand : logoutCommand)(rest, io, signal);
  }
  if (command === 'completion') {
    const { completionCommand } = await import('./commands/completion.js');
    return completionCommand(rest, io);
  }
  const near = nearest(command, [...Object.keys(imageCommands), ...OTHER_COMMANDS]);
  io.err(
    `nixoci: error: unknown command ${JSON.stringify(command)}\nhint: ${near !== undefined ? `did you mean ${near}?` : 'run `nixoci --help` for the commands'}\n`,
  );
  return EXIT_USAGE;
}
