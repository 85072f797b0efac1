/**
 * JSON with comments, as devbox writes and reads it: `//` and `/* *\/` comments outside strings
 * and trailing commas are allowed. They are blanked out (newlines kept) so that the positions in
 * JSON.parse's errors still point at the user's line and column.
 */
export function stripJsonc(text: string): string {
  const out = text.split('');
  let i = 0;
  const blank = (from: number, to: number): void => {
    for (let k = from; k < to; k++) if (out[k] !== '\n' && out[k] !== '\r') out[k] = ' ';
  };
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      i++;
      while (i < text.length && text[i] !== '"' && text[i] !== '\n') i += text[i] === '\\' ? 2 : 1;
      i++;
    } else if (c === '/' && text[i + 1] === '/') {
      const end = text.indexOf('\n', i);
      const stop = end < 0 ? text.length : end;
      blank(i, stop);
      i = stop;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      const stop = end < 0 ? text.length : end + 2;
      blank(i, stop);
      i = stop;
    } else {
      i++;
    }
  }
  // Trailing commas: a comma followed only by blanks before `}` or `]` (comments are blank now).
  const stripped = out.join('');
  return stripped.replace(/,(\s*[}\]])/g, (m, rest: string, offset: number) =>
    insideString(stripped, offset) ? m : ` ${rest}`,
  );
}

function insideString(text: string, offset: number): boolean {
  // Count unescaped quotes on the line before the comma: odd means the comma is in a string.
  const start = text.lastIndexOf('\n', offset) + 1;
  let quotes = 0;
  for (let i = start; i < offset; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') quotes++;
  }
  return quotes % 2 === 1;
}

export class JsoncSyntaxError extends Error {
  constructor(
    message: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(message);
  }
}

/** Parses JSON with comments; a syntax error says its line and column (1-based). */
export function parseJsonc(text: string): unknown {
  const clean = stripJsonc(text);
  try {
    return JSON.parse(clean) as unknown;
  } catch (e) {
    const msg = (e as Error).message;
    const m = /position (\d+)/.exec(msg);
    const pos = m ? Number(m[1]) : clean.length;
    const before = clean.slice(0, pos);
    const line = before.split('\n').length;
    const column = pos - before.lastIndexOf('\n');
    const why = msg.replace(/ in JSON at position \d+.*$/, '').replace(/^JSON\.parse: /, '');
    throw new JsoncSyntaxError(why, line, column);
  }
}
