import fc from 'fast-check';
import { TidemarkError } from '../../src/util/errors.js';
import { formatSize, isPowerOfTwo, parseSize } from '../../src/util/sizes.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof TidemarkError ? err.code : 'not a TidemarkError';
  }
  return undefined;
}

describe('parseSize', () => {
  it.each([
    ['0', 0],
    ['4096', 4096],
    ['64Ki', 64 * 1024],
    ['10Gi', 10 * 1024 ** 3],
    ['1.5Gi', 1.5 * 1024 ** 3],
    ['1.5Ki', 1536],
    ['2Ti', 2 * 1024 ** 4],
    ['1G', 1e9],
    ['3M', 3e6],
    ['7K', 7000],
    ['512B', 512],
    ['  5 Mi  ', 5 * 1024 ** 2],
  ])('parses %j as %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each(['', ' ', 'Ki', '-1', '1e3', '1KiB', '1kb', '1 Xi', '0x10', '1.1Ki', '9007199254740993', '99999999Ti', 'NaN', 'Infinity'])(
    'refuses %j with INVALID_ARGUMENT',
    (text) => {
      expect(codeOf(() => parseSize(text))).toBe('INVALID_ARGUMENT');
    },
  );

  it('names what was being parsed in the message', () => {
    expect(() => parseSize('lots', 'volume size')).toThrow(/volume size "lots"/);
  });

  it('round-trips every whole number of binary units', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4096 }), fc.constantFrom(['', 1], ['Ki', 1024], ['Mi', 1024 ** 2], ['Gi', 1024 ** 3]), (n, [unit, factor]) => {
        expect(parseSize(`${n}${unit as string}`)).toBe(n * (factor as number));
      }),
    );
  });
});

describe('formatSize', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.00 KiB'],
    [1536, '1.50 KiB'],
    [10 * 1024, '10.0 KiB'],
    [64 * 1024 ** 2, '64.0 MiB'],
    [1024 ** 3, '1.00 GiB'],
    [3 * 1024 ** 4, '3.00 TiB'],
    [2048 * 1024 ** 4, '2048.0 TiB'],
  ])('formats %d as %j', (bytes, text) => {
    expect(formatSize(bytes)).toBe(text);
  });

  it('formats to a value that parses back to within the rounding of its unit', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 50 }), (bytes) => {
        const [value, unit] = formatSize(bytes).split(' ') as [string, string];
        const back = Number(value) * ({ B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 } as Record<string, number>)[unit]!;
        expect(Math.abs(back - bytes)).toBeLessThanOrEqual(bytes * 0.005 + 1);
      }),
    );
  });
});

describe('isPowerOfTwo', () => {
  it('accepts every power of two a size can be', () => {
    for (let k = 0; k <= 52; k++) expect(isPowerOfTwo(2 ** k)).toBe(true);
  });

  it.each([0, -1, -2, 3, 6, 1000, 0.5, 1.5, NaN, Infinity, 2 ** 53 + 2])('refuses %d', (n) => {
    expect(isPowerOfTwo(n)).toBe(false);
  });

  // Numbers above 32 bits must not be judged by their low 32 bits alone.
  it.each([2 ** 32 + 2 ** 40, 3 * 2 ** 32, 2 ** 33 + 4096, 5 * 2 ** 40])('refuses %d, which is not a power of two above 2^32', (n) => {
    expect(isPowerOfTwo(n)).toBe(false);
  });

  it('agrees with a bit count on random safe integers', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (n) => {
        const ones = n.toString(2).split('').filter((c) => c === '1').length;
        expect(isPowerOfTwo(n)).toBe(ones === 1);
      }),
    );
  });
});
