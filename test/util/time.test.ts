import { TidemarkError } from '../../src/util/errors.js';
import { parseRfc3339 } from '../../src/util/time.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof TidemarkError ? err.code : 'not a TidemarkError';
  }
  return undefined;
}

describe('parseRfc3339', () => {
  it.each([
    ['2026-11-21T10:00:00Z', '2026-11-21T10:00:00.000Z'],
    ['2026-11-21T10:00:00.5Z', '2026-11-21T10:00:00.500Z'],
    ['2026-11-21T10:00:00.123Z', '2026-11-21T10:00:00.123Z'],
    ['2026-11-21T12:00:00+02:00', '2026-11-21T10:00:00.000Z'],
    ['2026-11-21T05:30:00-04:30', '2026-11-21T10:00:00.000Z'],
    ['2026-11-21t10:00:00z', '2026-11-21T10:00:00.000Z'],
    ['2026-11-21 10:00:00Z', '2026-11-21T10:00:00.000Z'],
    ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000Z'],
    ['2026-12-31T23:59:59Z', '2026-12-31T23:59:59.000Z'],
  ])('parses %j', (text, iso) => {
    expect(parseRfc3339(text).toISOString()).toBe(iso);
  });

  it.each([
    '2026-11-21T10:00:00', // no zone: ambiguous
    '2026-11-21',
    '10:00:00Z',
    'yesterday',
    '',
    '2026-11-21T10:00Z',
    '2026-11-21T10:00:00+0200',
    '1700000000',
  ])('refuses the malformed %j', (text) => {
    expect(codeOf(() => parseRfc3339(text))).toBe('INVALID_ARGUMENT');
    expect(() => parseRfc3339(text)).toThrow(/RFC 3339/);
  });

  // A day or hour that does not exist must not silently become another instant.
  it.each([
    '2026-02-30T10:00:00Z',
    '2026-02-29T10:00:00Z',
    '2026-04-31T00:00:00Z',
    '2026-13-01T00:00:00Z',
    '2026-00-10T00:00:00Z',
    '2026-11-00T00:00:00Z',
    '2026-11-21T24:00:00Z',
    '2026-11-21T23:60:00Z',
    '2026-11-21T10:00:00+25:00',
  ])('refuses the impossible %j', (text) => {
    expect(codeOf(() => parseRfc3339(text))).toBe('INVALID_ARGUMENT');
  });
});
