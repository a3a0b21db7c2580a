import { invalidArgument } from './errors.js';

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** Parses an RFC 3339 timestamp with an explicit offset; a bare local time is refused as ambiguous. */
export function parseRfc3339(text: string): Date {
  if (!RFC3339.test(text)) {
    throw invalidArgument(`malformed time "${text}": use RFC 3339 with a zone, e.g. 2026-11-21T10:00:00Z`);
  }
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) throw invalidArgument(`malformed time "${text}": not a real date`);
  return date;
}
