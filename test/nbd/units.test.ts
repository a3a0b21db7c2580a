import fc from 'fast-check';
import { BufferPool } from '../../src/nbd/buffer-pool.js';
import { ByteQueue } from '../../src/nbd/byte-queue.js';
import { nbdErrno } from '../../src/nbd/errno.js';
import { OptionReader, decodeString, parseRequestHeader, truncateUtf8 } from '../../src/nbd/frames.js';
import { describeExtents } from '../../src/nbd/meta.js';
import { nbdUnixUri } from '../../src/nbd/index.js';
import { TidemarkError } from '../../src/util/errors.js';

describe('ByteQueue', () => {
  test('any chunking and any sequence of takes and skips yields the stream in order', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 2000 }),
        fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 40 }),
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 400 })), { maxLength: 60 }),
        (bytes, cuts, ops) => {
          const stream = Buffer.from(bytes);
          const q = new ByteQueue();
          let at = 0;
          let i = 0;
          while (at < stream.length) {
            const n = cuts[i++ % cuts.length]!;
            q.push(stream.subarray(at, at + n));
            at += n;
          }
          let read = 0;
          for (const [isTake, n] of ops) {
            const count = Math.min(n, q.length);
            if (isTake) {
              expect(q.take(count).equals(stream.subarray(read, read + count))).toBe(true);
            } else {
              expect(q.skip(n)).toBe(count);
            }
            read += count;
            expect(q.length).toBe(stream.length - read);
          }
          expect(q.take(q.length).equals(stream.subarray(read))).toBe(true);
        },
      ),
    );
  });

  test('borrowed chunks (one read buffer, reused): frames are copies, and keep() saves what is left before the buffer is overwritten', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 2000 }),
        fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 40 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 400 })), { maxLength: 60 }),
        (bytes, cuts, ops) => {
          const stream = Buffer.from(bytes);
          const scratch = Buffer.alloc(300);
          const q = new ByteQueue();
          const taken: Buffer[] = [];
          let read = 0;
          let at = 0;
          let i = 0;
          let op = 0;
          while (at < stream.length) {
            const n = Math.min(cuts[i++ % cuts.length]!, stream.length - at);
            stream.copy(scratch, 0, at, at + n);
            q.push(scratch.subarray(0, n), true);
            at += n;
            // A few operations while the chunk is borrowed, as a connection parses frames.
            for (let k = 0; k < 3 && op < ops.length; k++, op++) {
              const [kind, want] = ops[op]!;
              const count = Math.min(want, q.length);
              if (kind === 0) {
                const frame = q.take(count);
                if (count > 0) expect(frame.buffer).not.toBe(scratch.buffer);
                taken.push(frame);
              } else if (kind === 1) {
                const into = Buffer.alloc(count + 3);
                expect(q.takeInto(into, 3)).toBe(count);
                taken.push(into.subarray(3));
              } else {
                expect(q.skip(count)).toBe(count);
                taken.push(stream.subarray(read, read + count));
              }
              read += count;
            }
            q.keep();
            scratch.fill(0xee);
          }
          taken.push(q.take(q.length));
          expect(Buffer.concat(taken).equals(stream)).toBe(true);
        },
      ),
    );
  });

  test('a frame inside one chunk is a view, not a copy', () => {
    const q = new ByteQueue();
    const chunk = Buffer.from('abcdefgh');
    q.push(chunk);
    const view = q.take(4);
    expect(view.buffer).toBe(chunk.buffer);
    expect(() => q.take(5)).toThrow(RangeError);
  });
});

describe('describeExtents', () => {
  test('matches a byte-by-byte model, never exceeds the request and merges equal neighbours', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 1, max: 40 })), { maxLength: 12 }),
        fc.integer({ min: 0, max: 250 }),
        fc.integer({ min: 1, max: 120 }),
        fc.boolean(),
        (raw, offset, length, onlyOne) => {
          // Normalise into sorted, disjoint, non-touching extents, as the engine returns them.
          const marked = new Uint8Array(300);
          for (const [o, l] of raw) marked.fill(1, o, o + l);
          const extents: { offset: number; length: number }[] = [];
          for (let b = 0; b < marked.length; b++) {
            if (!marked[b]) continue;
            const last = extents[extents.length - 1];
            if (last && last.offset + last.length === b) last.length++;
            else extents.push({ offset: b, length: 1 });
          }
          const out = describeExtents(extents, offset, length, 7, 3, onlyOne);
          expect(out.length).toBeGreaterThan(0);
          if (onlyOne) expect(out.length).toBe(1);
          let at = offset;
          for (let i = 0; i < out.length; i++) {
            const [len, flags] = out[i]!;
            expect(len).toBeGreaterThan(0);
            if (i > 0) expect(flags).not.toBe(out[i - 1]![1]);
            for (let b = at; b < at + len; b++) expect(flags).toBe(marked[b] ? 7 : 3);
            at += len;
          }
          if (onlyOne) expect(at).toBeLessThanOrEqual(offset + length);
          else expect(at).toBe(offset + length);
        },
      ),
    );
  });
});

describe('BufferPool', () => {
  test('reuses buffers of a size class once released, and ignores what it did not hand out', () => {
    const pool = new BufferPool(1024 * 1024);
    const a = pool.acquire(5000);
    expect(a.length).toBe(5000);
    pool.release(a);
    expect(pool.bytes).toBe(8192);
    const b = pool.acquire(8000);
    expect(b.buffer).toBe(a.buffer);
    expect(pool.bytes).toBe(0);
    pool.release(Buffer.alloc(8192).subarray(1));
    pool.release(Buffer.from('small'));
    expect(pool.bytes).toBe(0);
    const huge = pool.acquire(64 * 1024 * 1024);
    pool.release(huge);
    expect(pool.bytes).toBe(0);
  });

  test('keeps at most its budget', () => {
    const pool = new BufferPool(64 * 1024);
    const buffers = Array.from({ length: 4 }, () => pool.acquire(32 * 1024));
    for (const b of buffers) pool.release(b);
    expect(pool.bytes).toBe(64 * 1024);
  });
});

describe('frames', () => {
  test('request headers: 64-bit offsets beyond 2^53 clamp past any export', () => {
    const b = Buffer.alloc(28);
    b.writeUInt32BE(0x25609513, 0);
    b.writeUInt16BE(0x11, 4);
    b.writeUInt16BE(6, 6);
    b.writeBigUInt64BE(0x0102030405060708n, 8);
    b.writeBigUInt64BE(2n ** 40n + 5n, 16);
    b.writeUInt32BE(4096, 24);
    const { magic, header } = parseRequestHeader(b);
    expect(magic).toBe(0x25609513);
    expect(header).toEqual({ flags: 0x11, type: 6, handleHi: 0x01020304, handleLo: 0x05060708, offset: 2 ** 40 + 5, length: 4096 });
    b.writeBigUInt64BE(2n ** 63n, 16);
    expect(parseRequestHeader(b).header.offset).toBe(Number.MAX_SAFE_INTEGER);
  });

  test('strings must be UTF-8 without NUL; readers refuse to overrun', () => {
    expect(decodeString(Buffer.from('vol-1'))).toBe('vol-1');
    expect(decodeString(Buffer.from([0x61, 0x00]))).toBeUndefined();
    expect(decodeString(Buffer.from([0xc3]))).toBeUndefined();
    const r = new OptionReader(Buffer.from([0, 0, 0, 9, 0x61]));
    expect(r.u32()).toBe(9);
    expect(r.string(9)).toBeUndefined();
    expect(truncateUtf8('ééé', 5).toString()).toBe('éé');
  });

  test('unix socket URIs keep slashes and escape the rest', () => {
    expect(nbdUnixUri('vol', '/run/tidemark/nbd.sock')).toBe('nbd+unix:///vol?socket=/run/tidemark/nbd.sock');
    expect(nbdUnixUri('a b', '/tmp/x&y.sock')).toBe('nbd+unix:///a%20b?socket=/tmp/x%26y.sock');
  });
});

describe('errno mapping', () => {
  test('engine errors become the NBD error the spec asks for', () => {
    const err = (code: ConstructorParameters<typeof TidemarkError>[0]) => new TidemarkError(code, 'x');
    expect(nbdErrno(err('RESOURCE_EXHAUSTED'), 'write')).toBe(28);
    expect(nbdErrno(err('OUT_OF_RANGE'), 'write')).toBe(28);
    expect(nbdErrno(err('OUT_OF_RANGE'), 'other')).toBe(22);
    expect(nbdErrno(err('INVALID_ARGUMENT'), 'other')).toBe(22);
    expect(nbdErrno(err('UNAVAILABLE'), 'other')).toBe(108);
    expect(nbdErrno(err('INTERNAL'), 'write')).toBe(5);
    expect(nbdErrno(new Error('boom'), 'other')).toBe(5);
  });
});
