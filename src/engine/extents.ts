/** A byte range of a volume. */
export interface Extent {
  offset: number;
  length: number;
}

/** Sorts and merges touching or overlapping extents; drops empty ones. */
export function normalize(extents: readonly Extent[]): Extent[] {
  const sorted = extents.filter((e) => e.length > 0).sort((a, b) => a.offset - b.offset);
  const out: Extent[] = [];
  for (const e of sorted) {
    const last = out[out.length - 1];
    if (last && e.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, e.offset + e.length - last.offset);
    } else {
      out.push({ offset: e.offset, length: e.length });
    }
  }
  return out;
}

/** The parts of normalized `a` that lie inside normalized `b`. */
export function intersect(a: readonly Extent[], b: readonly Extent[]): Extent[] {
  const out: Extent[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    const start = Math.max(x.offset, y.offset);
    const end = Math.min(x.offset + x.length, y.offset + y.length);
    if (start < end) out.push({ offset: start, length: end - start });
    if (x.offset + x.length < y.offset + y.length) i++;
    else j++;
  }
  return out;
}

/** The parts of normalized `a` outside normalized `b`. */
export function subtract(a: readonly Extent[], b: readonly Extent[]): Extent[] {
  const out: Extent[] = [];
  let j = 0;
  for (const x of a) {
    let start = x.offset;
    const end = x.offset + x.length;
    while (j < b.length && b[j]!.offset + b[j]!.length <= start) j++;
    let k = j;
    while (start < end && k < b.length && b[k]!.offset < end) {
      const y = b[k]!;
      if (y.offset > start) out.push({ offset: start, length: y.offset - start });
      start = Math.max(start, y.offset + y.length);
      k++;
    }
    if (start < end) out.push({ offset: start, length: end - start });
  }
  return out;
}

export function totalLength(extents: readonly Extent[]): number {
  return extents.reduce((sum, e) => sum + e.length, 0);
}

/** Splits extents into pieces of at most `max` bytes, for bounded buffers. */
export function* chunked(extents: readonly Extent[], max: number): Generator<Extent> {
  for (const e of extents) {
    for (let at = 0; at < e.length; at += max) {
      yield { offset: e.offset + at, length: Math.min(max, e.length - at) };
    }
  }
}
