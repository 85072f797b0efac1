import { describe, expect, it } from 'vitest';
import { isRfc3339 } from '../../src/cli/assemble.js';

describe('--created', () => {
  it('takes RFC 3339 date-times on real calendar days, with an offset', () => {
    for (const t of [
      '1970-01-01T00:00:01Z',
      '2024-02-29T23:59:59Z',
      '2024-01-02T03:04:05.123456789+05:30',
      '2000-12-31t10:00:00-08:00',
    ])
      expect(isRfc3339(t), t).toBe(true);
    for (const t of [
      '2023-02-29T00:00:00Z',
      '2024-04-31T00:00:00Z',
      '2024-13-01T00:00:00Z',
      '2024-01-01T24:00:00Z',
      '2024-01-01T00:60:00Z',
      '2024-01-01T00:00:60Z',
      '2024-01-01T00:00:00',
      '2024-01-01T00:00:00+25:00',
      '2024-01-01',
      'yesterday',
    ])
      expect(isRfc3339(t), t).toBe(false);
  });
});
