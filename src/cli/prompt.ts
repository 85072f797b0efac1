import { NixociError } from '../core/errors.js';

/**
 * Asks on the terminal (standard input a TTY) and reads one line, echoed or not. Raw mode is set
 * before the question is written, so nothing typed after it is ever echoed by the terminal itself;
 * the line is edited here (backspace), Ctrl-C or Ctrl-D on an empty line cancel.
 */
export function ask(question: string, echo: boolean, write: (s: string) => void): Promise<string> {
  const input = process.stdin;
  input.setRawMode(true);
  write(question);
  input.resume();
  return new Promise((resolve, reject) => {
    let line = '';
    const finish = (e?: NixociError): void => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      write('\n');
      if (e) reject(e);
      else resolve(line);
    };
    const onData = (b: Buffer): void => {
      for (const c of b.toString('utf8')) {
        if (c === '\r' || c === '\n') return finish();
        if (c === '\u0003' || (c === '\u0004' && line === ''))
          return finish(new NixociError('ABORTED', 'login cancelled: nothing was stored'));
        if (c === '\u007f' || c === '\b') {
          if (line.length > 0 && echo) write('\b \b');
          line = [...line].slice(0, -1).join('');
        } else if (c >= ' ') {
          line += c;
          if (echo) write(c);
        }
      }
    };
    input.on('data', onData);
  });
}

/** All of standard input, one trailing newline (`\n` or `\r\n`) taken off, as docker does. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}
