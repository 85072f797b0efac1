// The sizes and rates every summary and progress line prints (src/cli/output.ts).
import { describe, expect, it } from 'vitest';
import { humanSize } from '../../src/cli/output.js';

describe('humanSize', () => {
  it('prints whole bytes, then binary units with one decimal', () => {
    expect(humanSize(0)).toBe('0 B');
    expect(humanSize(1023)).toBe('1023 B');
    expect(humanSize(1024)).toBe('1.0 KiB');
    expect(humanSize(1536)).toBe('1.5 KiB');
    expect(humanSize(208.6 * 1024 * 1024)).toBe('208.6 MiB');
    expect(humanSize(3 * 1024 ** 4)).toBe('3.0 TiB');
  });

  it('rounds a rate to whole bytes (300 bytes in 0.7 s)', () => {
    expect(humanSize(300 / 0.7)).toBe('429 B');
  });

  it('shows a number that rounds up to 1024 in the next unit', () => {
    expect(humanSize(1023.7)).toBe('1.0 KiB');
    expect(humanSize(1048575)).toBe('1.0 MiB');
    expect(humanSize(1024 * 1024 * 1023.97)).toBe('1.0 GiB');
    expect(humanSize(1024 * 1023.9)).toBe('1023.9 KiB');
  });
});
