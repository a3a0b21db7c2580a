import type { Extent } from '../engine/index.js';
import { invalidArgument } from '../util/errors.js';
import { parseSize } from '../util/sizes.js';

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Parses "90" (seconds), "30s", "10m", "2h", "7d", "1w" or combinations such as "1h30m" into seconds. */
export function parseDuration(text: string, what = 'duration'): number {
  const trimmed = text.trim();
  const malformed = () => invalidArgument(`malformed ${what} "${text}": use seconds or a number with s, m, h, d or w, e.g. 30s, 10m, 2h, 7d`);
  if (/^\d+$/.test(trimmed)) return positive(Number(trimmed), text, what);
  if (!/^(\d+[smhdw])+$/.test(trimmed)) throw malformed();
  let seconds = 0;
  for (const [, count, unit] of trimmed.matchAll(/(\d+)([smhdw])/g)) seconds += Number(count) * DURATION_UNITS[unit!]!;
  return positive(seconds, text, what);
}

function positive(seconds: number, text: string, what: string): number {
  if (!Number.isSafeInteger(seconds) || seconds <= 0) throw invalidArgument(`malformed ${what} "${text}": must be at least one second`);
  return seconds;
}

/** "7d", "2h", "1h30m": the shortest exact spelling of a number of seconds. */
export function formatDuration(seconds: number): string {
  if (seconds <= 0) return '0s';
  let rest = Math.round(seconds);
  let out = '';
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out;
}

/** An OFFSET:LENGTH byte range; both parts accept sizes such as 1Mi. */
export function parseRange(text: string): Extent {
  const parts = text.split(':');
  if (parts.length !== 2 || parts[0]!.trim() === '' || parts[1]!.trim() === '') {
    throw invalidArgument(`malformed range "${text}": use OFFSET:LENGTH, e.g. 0:1Mi`);
  }
  const offset = parseSize(parts[0]!, 'range offset');
  const length = parseSize(parts[1]!, 'range length');
  if (length === 0) throw invalidArgument(`range "${text}" is empty: its length must be above 0`);
  return { offset, length };
}

/** Collects a repeatable option's values in order. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
