import { describe, expect, it } from 'vitest';
import { printableBytes } from '../../src/core/escape-controls.js';

describe('printableBytes', () => {
  const b = (...parts: (string | number[])[]): Buffer =>
    Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));

  it('keeps UTF-8 and shows every other byte as \\xNN, never as U+FFFD or raw', () => {
    expect(printableBytes(b('/nix/store/x-grüße/日本'))).toBe('/nix/store/x-grüße/日本');
    expect(printableBytes(b('bad', [0xff, 0xfe], '.bin'))).toBe('bad\\xff\\xfe.bin');
    // a lead byte without its continuation, a lone continuation byte, a sequence cut at the end
    expect(printableBytes(b('raw-', [0xc3, 0x28]))).toBe('raw-\\xc3(');
    expect(printableBytes(b([0x80], 'x'))).toBe('\\x80x');
    expect(printableBytes(b('end', [0xe6, 0x97]))).toBe('end\\xe6\\x97');
    // overlong forms and UTF-16 surrogates are not UTF-8 either
    expect(printableBytes(b([0xc0, 0xaf]))).toBe('\\xc0\\xaf');
    expect(printableBytes(b([0xed, 0xa0, 0x80]))).toBe('\\xed\\xa0\\x80');
  });

  it('escapes control characters, C1 ones included, and doubles a backslash', () => {
    expect(printableBytes(b('a\nb\x1b[31m'))).toBe('a\\x0ab\\x1b[31m');
    expect(printableBytes(b('\u009b'))).toBe('\\x9b');
    expect(printableBytes(b('a\\xffb'))).toBe('a\\\\xffb');
  });
});
