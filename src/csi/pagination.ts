import { aborted, invalid } from './errors.js';

const TOKEN_PREFIX = 'tm1:';

export interface Page<T> {
  items: T[];
  nextToken: string;
}

/**
 * One page of a list sorted by `keyOf`. The token is the key of the last entry returned
 * (base64url, versioned), so a page boundary survives entries being added or deleted in
 * between: the next page starts at the first key after it. A token that does not decode is
 * refused with ABORTED, as the spec prescribes for ListVolumes and ListSnapshots.
 */
export function paginate<T>(sorted: T[], keyOf: (item: T) => string, maxEntries: number, startingToken: string): Page<T> {
  if (!Number.isInteger(maxEntries) || maxEntries < 0) throw invalid(`max_entries ${maxEntries} must not be negative`);
  let start = 0;
  if (startingToken) {
    const after = decodeToken(startingToken);
    start = sorted.findIndex((item) => keyOf(item) > after);
    if (start < 0) start = sorted.length;
  }
  const rest = sorted.slice(start);
  if (maxEntries === 0 || rest.length <= maxEntries) return { items: rest, nextToken: '' };
  const items = rest.slice(0, maxEntries);
  return { items, nextToken: encodeToken(keyOf(items[items.length - 1]!)) };
}

export function encodeToken(key: string): string {
  return Buffer.from(TOKEN_PREFIX + key, 'utf8').toString('base64url');
}

function decodeToken(token: string): string {
  const text = /^[A-Za-z0-9_-]+$/.test(token) ? Buffer.from(token, 'base64url').toString('utf8') : '';
  if (!text.startsWith(TOKEN_PREFIX)) {
    throw aborted(`starting_token "${token}" is not a token this plugin issued; start the listing again without one`);
  }
  return text.slice(TOKEN_PREFIX.length);
}

/** Sort keys: names are engine names, which never contain "/". */
export const compareKeys = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
