import type { Extent } from '../engine/index.js';
import type { NbdBackend } from './backend.js';
import { BASE_ALLOCATION, DIRTY_BITMAP_PREFIX, STATE_DIRTY, STATE_HOLE, STATE_ZERO } from './protocol.js';

/**
 * Metadata contexts tidemark offers on every export:
 *
 * - `base:allocation` — extents never written since the volume was created (or since it was
 *   cloned from a snapshot, which counts as written) read as zeros: HOLE|ZERO; others 0.
 * - `qemu:dirty-bitmap:<snapshot>` — extents changed since that snapshot of the volume:
 *   flag 1 (dirty), others 0. Backup tools use it for incremental copies, as with qemu.
 *
 * Queries follow the spec and qemu's docs/interop/nbd.txt: `base:` and `qemu:` (or
 * `qemu:dirty-bitmap:`) list every context of their namespace in NBD_OPT_LIST_META_CONTEXT
 * and select nothing in NBD_OPT_SET_META_CONTEXT; unknown namespaces and leaves are ignored.
 */
export type ContextSpec = { name: string; kind: 'allocation' } | { name: string; kind: 'dirty'; snapshot: string };

export type SelectedContext = ContextSpec & { id: number };

export type QueryResult = { ok: true; contexts: ContextSpec[] } | { ok: false; reason: string };

const allocation: ContextSpec = { name: BASE_ALLOCATION, kind: 'allocation' };

function dirtyContexts(engine: NbdBackend, volume: string): ContextSpec[] {
  return engine.listSnapshots(volume).map((s) => ({ name: DIRTY_BITMAP_PREFIX + s.name, kind: 'dirty', snapshot: s.name }));
}

function hasSnapshot(engine: NbdBackend, volume: string, snapshot: string): boolean {
  return engine.listSnapshots(volume).some((s) => s.name === snapshot);
}

/** Contexts matching the queries of NBD_OPT_LIST_META_CONTEXT; no query lists everything. */
export function listContexts(engine: NbdBackend, volume: string, queries: string[]): QueryResult {
  if (queries.length === 0) return { ok: true, contexts: [allocation, ...dirtyContexts(engine, volume)] };
  const found = new Map<string, ContextSpec>();
  for (const query of queries) {
    const colon = query.indexOf(':');
    if (colon <= 0) return { ok: false, reason: `query ${JSON.stringify(query.slice(0, 80))} does not start with a namespace and a colon` };
    const namespace = query.slice(0, colon);
    const leaf = query.slice(colon + 1);
    if (namespace === 'base') {
      if (leaf === '' || leaf === 'allocation') found.set(allocation.name, allocation);
    } else if (namespace === 'qemu') {
      if (leaf === '' || leaf === 'dirty-bitmap:') {
        for (const c of dirtyContexts(engine, volume)) found.set(c.name, c);
      } else if (query.startsWith(DIRTY_BITMAP_PREFIX)) {
        const snapshot = query.slice(DIRTY_BITMAP_PREFIX.length);
        if (hasSnapshot(engine, volume, snapshot)) found.set(query, { name: query, kind: 'dirty', snapshot });
      }
    }
  }
  return { ok: true, contexts: [...found.values()] };
}

/** Contexts chosen by NBD_OPT_SET_META_CONTEXT: only exact names select anything. */
export function selectContexts(engine: NbdBackend, volume: string, queries: string[]): QueryResult {
  const found = new Map<string, ContextSpec>();
  for (const query of queries) {
    const colon = query.indexOf(':');
    if (colon <= 0) return { ok: false, reason: `query ${JSON.stringify(query.slice(0, 80))} does not start with a namespace and a colon` };
    if (query === BASE_ALLOCATION) {
      found.set(query, allocation);
    } else if (query.startsWith(DIRTY_BITMAP_PREFIX) && query.length > DIRTY_BITMAP_PREFIX.length) {
      const snapshot = query.slice(DIRTY_BITMAP_PREFIX.length);
      if (hasSnapshot(engine, volume, snapshot)) found.set(query, { name: query, kind: 'dirty', snapshot });
    }
  }
  return { ok: true, contexts: [...found.values()] };
}

/** Most descriptors sent in one block status chunk; the spec lets a server send fewer. */
export const MAX_DESCRIPTORS = 1 << 16;

/**
 * Block status descriptors (length, flags) for [offset, offset + length) given the sorted,
 * non-overlapping extents that carry `markedFlags`; the rest carries `unmarkedFlags`.
 * Consecutive descriptors always differ, and they never reach past the request.
 */
export function describeExtents(
  marked: readonly Extent[],
  offset: number,
  length: number,
  markedFlags: number,
  unmarkedFlags: number,
  onlyOne: boolean,
): Array<[number, number]> {
  const end = offset + length;
  const out: Array<[number, number]> = [];
  let at = offset;
  // Binary search for the first extent that ends after `offset`.
  let lo = 0;
  let hi = marked.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (marked[mid]!.offset + marked[mid]!.length <= offset) lo = mid + 1;
    else hi = mid;
  }
  const push = (len: number, flags: number): boolean => {
    if (len <= 0) return true;
    const last = out[out.length - 1];
    if (last && last[1] === flags) last[0] += len;
    else out.push([len, flags]);
    return !(onlyOne || out.length >= MAX_DESCRIPTORS);
  };
  for (let i = lo; i < marked.length && at < end; i++) {
    const e = marked[i]!;
    const start = Math.max(e.offset, at);
    const stop = Math.min(e.offset + e.length, end);
    if (start >= end) break;
    if (!push(start - at, unmarkedFlags)) return out;
    if (!push(stop - start, markedFlags)) return out;
    at = stop;
  }
  if (at < end) push(end - at, unmarkedFlags);
  return out;
}

/** Descriptors of one selected context over a request; throws what the engine throws. */
export function blockStatus(engine: NbdBackend, volume: string, context: ContextSpec, offset: number, length: number, onlyOne: boolean): Array<[number, number]> {
  if (context.kind === 'allocation') {
    const written = engine.allocated(volume, { offset, length });
    return describeExtents(written, offset, length, 0, STATE_HOLE | STATE_ZERO, onlyOne);
  }
  const changed = engine.diff(volume, context.snapshot);
  return describeExtents(changed, offset, length, STATE_DIRTY, 0, onlyOne);
}
