import { BLOCK_SIZE, LENGTH, OFFSET, VOLUME_SIZE, formatDuration, granularityRange, parseDuration, parseRange, parseSequence, parseSizeOption } from '../../src/cli/args.js';
import { EXIT, exitCodeFor } from '../../src/cli/exit-codes.js';
import { table } from '../../src/cli/output.js';
import type { ErrorCode } from '../../src/util/errors.js';

describe('command-line parsing', () => {
  it.each([
    ['90', 90],
    ['30s', 30],
    ['10m', 600],
    ['2h', 7200],
    ['7d', 604800],
    ['1w', 604800],
    ['1h30m', 5400],
  ])('reads the duration %s as %i seconds', (text, seconds) => {
    expect(parseDuration(text)).toBe(seconds);
  });

  it.each(['', '0', '0s', '5y', '1.5h', 'h', '-3m', '10 m x'])('refuses the duration "%s"', (text) => {
    expect(() => parseDuration(text)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('writes durations back in the shortest exact form', () => {
    expect([60, 5400, 604800, 90061].map(formatDuration)).toEqual(['1m', '1h30m', '7d', '1d1h1m1s']);
    for (const s of [1, 59, 61, 3601, 86399, 1234567]) expect(parseDuration(formatDuration(s))).toBe(s);
  });

  it('reads ranges with sizes on both sides', () => {
    expect(parseRange('0:4096')).toEqual({ offset: 0, length: 4096 });
    expect(parseRange('1Mi:64Ki')).toEqual({ offset: 1024 * 1024, length: 65536 });
    for (const bad of ['4096', ':4096', '0:', '0:0', '1:2:3', 'a:b']) {
      expect(() => parseRange(bad)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });

  it('refuses zero and negative numbers with the accepted range rather than reading them as the default', () => {
    const refused = (fn: () => unknown, range: RegExp) => expect(fn).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(range) }));
    for (const text of ['0', '-4096', '-0', '768', '128Ki']) refused(() => parseSizeOption(text, 'block size', BLOCK_SIZE), /is out of range: a power of two from 512 to 64Ki$/);
    for (const text of ['0', '-64Ki', '2Ki', '128Mi', '96Ki']) refused(() => parseSizeOption(text, 'granularity', granularityRange()), /from the block size \(4096\) to 64Mi$/);
    refused(() => parseSizeOption('8Ki', 'granularity', granularityRange(16384)), /from the block size \(16384\)/);
    refused(() => parseSizeOption('0', 'size', VOLUME_SIZE), /above 0/);
    refused(() => parseSizeOption('0', 'length', LENGTH), /at least 1 byte/);
    refused(() => parseSizeOption('-1', 'offset', OFFSET), /0 or more/);
    refused(() => parseDuration('-5m'), /at least one second/);
    refused(() => parseSequence('-1'), /0 or more/);
    // Text that is no number at all is still called malformed.
    refused(() => parseSizeOption('lots', 'block size', BLOCK_SIZE), /malformed block size "lots"/);
    expect([parseSizeOption('512', 'block size', BLOCK_SIZE), parseSizeOption('64Ki', 'block size', BLOCK_SIZE), parseSizeOption('0', 'offset', OFFSET)]).toEqual([512, 65536, 0]);
    expect([parseSizeOption('4Ki', 'granularity', granularityRange()), parseSizeOption('64Mi', 'granularity', granularityRange())]).toEqual([4096, 64 * 1024 * 1024]);
    expect(parseSequence('0')).toBe(0);
  });

  it('maps every error class to its documented exit code', () => {
    const expected: Record<ErrorCode, number> = {
      INVALID_ARGUMENT: 2,
      OUT_OF_RANGE: 2,
      NOT_FOUND: 3,
      ALREADY_EXISTS: 4,
      FAILED_PRECONDITION: 5,
      EXPIRED: 5,
      BUSY: 5,
      UNAVAILABLE: 6,
      STORE_LOCKED: 6,
      RESOURCE_EXHAUSTED: 7,
      INTERNAL: 1,
    };
    for (const [code, exit] of Object.entries(expected)) expect(exitCodeFor(code as ErrorCode)).toBe(exit);
    expect(EXIT.OK).toBe(0);
  });

  it('aligns table columns', () => {
    expect(table(['NAME', 'SIZE'], [['a', '1'], ['long-name', '100']], [1])).toBe('NAME       SIZE\na             1\nlong-name   100');
  });
});
