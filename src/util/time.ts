import { invalidArgument } from './errors.js';

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$/;

/** Parses an RFC 3339 timestamp with an explicit offset; a bare local time is refused as ambiguous. */
export function parseRfc3339(text: string): Date {
  const match = RFC3339.exec(text);
  if (!match) {
    throw invalidArgument(`malformed time "${text}": use RFC 3339 with a zone, e.g. 2026-11-21T10:00:00Z`);
  }
  // Date rolls impossible fields over ("02-30" becomes March 2nd), which would silently
  // name another instant, so each field is checked against its real range first.
  const [year, month, day, hour, minute, second, , , offsetHours, offsetMinutes] = match.slice(1).map(Number) as number[];
  const lastOfMonth = new Date(0);
  lastOfMonth.setUTCFullYear(year!, month!, 0); // Date.UTC would read years below 100 as 19xx
  const daysInMonth = lastOfMonth.getUTCDate();
  const real =
    month! >= 1 && month! <= 12 && day! >= 1 && day! <= daysInMonth && hour! <= 23 && minute! <= 59 && second! <= 59 &&
    (offsetHours === undefined || Number.isNaN(offsetHours) || (offsetHours <= 23 && offsetMinutes! <= 59));
  const date = new Date(text);
  if (!real || Number.isNaN(date.getTime())) throw invalidArgument(`malformed time "${text}": not a real date`);
  return date;
}

/** Wall-clock milliseconds since the epoch, as Date.now() gives them; injectable so tests need not sleep. */
export type Clock = () => number;

export const systemClock: Clock = () => Date.now();
