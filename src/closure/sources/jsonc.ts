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
    // V8 gives no position for most errors ("Unexpected token '}', "…the whole file…" is not valid
    // JSON"), so the error is found again by a scanner that knows where it is.
    const found = firstSyntaxError(clean) ?? { pos: clean.length, why: (e as Error).message };
    const before = clean.slice(0, found.pos);
    const line = before.split('\n').length;
    const column = found.pos - before.lastIndexOf('\n');
    throw new JsoncSyntaxError(found.why, line, column);
  }
}

/** What a character is called in a message: the character itself, or "end of file". */
const shown = (c: string | undefined): string => (c === undefined ? 'end of file' : JSON.stringify(c));

/**
 * The offset of the first JSON syntax error in `text` and what it is, or undefined when `text` is
 * valid JSON. Only for messages: JSON.parse does the parsing.
 */
export function firstSyntaxError(text: string): { pos: number; why: string } | undefined {
  let i = 0;
  class At {
    constructor(
      readonly pos: number,
      readonly why: string,
    ) {}
  }
  const fail = (why: string, pos = i): never => {
    throw new At(pos, why);
  };
  const ws = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const expect = (c: string, what: string): void => {
    ws();
    if (text[i] !== c) fail(`expected ${what}, found ${shown(text[i])}`);
    i++;
  };
  const string = (): void => {
    const start = i++;
    for (;;) {
      const c = text[i];
      if (c === undefined || c === '\n') fail('unterminated string', start);
      if (c === '"') return void i++;
      if (c! < ' ') fail('control character in a string (write it as an escape, e.g. \\n)');
      if (c === '\\') {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) fail('bad \\u escape in a string');
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else fail(`bad escape \\${e ?? ''} in a string`);
      } else i++;
    }
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') return void i++;
      for (;;) {
        ws();
        if (text[i] !== '"') fail(`expected a property name in double quotes, found ${shown(text[i])}`);
        string();
        expect(':', "':' after the property name");
        value();
        ws();
        if (text[i] === '}') return void i++;
        if (text[i] !== ',') fail(`expected ',' or '}' after a property value, found ${shown(text[i])}`);
        i++;
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') return void i++;
      for (;;) {
        value();
        ws();
        if (text[i] === ']') return void i++;
        if (text[i] !== ',') fail(`expected ',' or ']' after a list element, found ${shown(text[i])}`);
        i++;
      }
    }
    if (c === '"') return string();
    const m = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text.slice(i, i + 400));
    // a number or literal must end there: `tru`, `01` and `1.` are not JSON
    if (m && !/[\w.+-]/.test(text[i + m[0].length] ?? '')) {
      i += m[0].length;
      return;
    }
    fail(
      `expected a value, found ${c === undefined ? 'end of file' : shown(/^[\w.+-]+/.exec(text.slice(i))?.[0] ?? c)}`,
    );
  };
  try {
    value();
    ws();
    if (i < text.length) fail(`unexpected ${shown(text[i])} after the end of the JSON value`);
    return undefined;
  } catch (e) {
    if (e instanceof At) return { pos: e.pos, why: e.why };
    throw e;
  }
}
