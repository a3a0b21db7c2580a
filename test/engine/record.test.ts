import fc from 'fast-check';
import {
  ALIGN_BYTES,
  ALIGNED_PAD_OFFSET,
  ALIGNED_WRITE_TYPE,
  HEADER_SIZE,
  MAX_RECORD_PAYLOAD,
  RECORD_MAGIC,
  RecordType,
  decodeRecord,
  encodeRecord,
  encodedSize,
  parseHeader,
  recordExtent,
  writeDataStart,
  type JournalRecord,
} from '../../src/engine/record.js';
import { crc32c } from '../../src/util/crc32c.js';

/** The LevelDB CRC mask the format documents, so tests can forge records with a valid checksum. */
const maskCrc = (crc: number) => ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;

function encode(record: JournalRecord): Buffer {
  const buffer = Buffer.alloc(encodedSize(record));
  expect(encodeRecord(record, buffer, 0)).toBe(buffer.length);
  return buffer;
}

/** Rewrites a record's checksum after a test tampered with it, so only the tampering is judged. */
function reseal(bytes: Buffer): Buffer {
  bytes.writeUInt32LE(maskCrc(crc32c(bytes.subarray(4))), 0);
  return bytes;
}

const sequence = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });
const time = fc.integer({ min: 0, max: 2 ** 48 });
const offset = fc.integer({ min: 0, max: 2 ** 50 });
const name = fc.string({ unit: 'grapheme', minLength: 0, maxLength: 40 });

const recordArb: fc.Arbitrary<JournalRecord> = fc.oneof(
  fc.record({ type: fc.constant(RecordType.Write as const), offset, data: fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)), sequence, time }),
  fc.record({ type: fc.constantFrom(RecordType.Zero as const, RecordType.Trim as const), offset, length: fc.integer({ min: 0, max: 2 ** 50 }), sequence, time }),
  fc.record({ type: fc.constant(RecordType.Marker as const), name, group: fc.oneof(fc.constant(''), fc.uuid()), sequence, time }),
  fc.record({ type: fc.constant(RecordType.Snapshot as const), name, sequence, time }),
);

describe('journal record codec', () => {
  it('decodes what it encodes, for every record type', () => {
    fc.assert(
      fc.property(recordArb, (record) => {
        const bytes = encode(record);
        const decoded = decodeRecord(bytes);
        expect(decoded.ok).toBe(true);
        if (!decoded.ok) return;
        if (record.type === RecordType.Write && decoded.record.type === RecordType.Write) {
          expect(Buffer.compare(decoded.record.data, record.data)).toBe(0);
          expect({ ...decoded.record, data: null }).toEqual({ ...record, data: null });
        } else {
          expect(decoded.record).toEqual(record);
        }
        const header = parseHeader(bytes);
        expect(header).toEqual({ ok: true, type: record.type, aligned: false, payloadLength: bytes.length - HEADER_SIZE, sequence: record.sequence, time: record.time });
      }),
    );
  });

  it('encodes at an offset inside a larger buffer and decodes records laid end to end', () => {
    fc.assert(
      fc.property(fc.array(recordArb, { minLength: 1, maxLength: 6 }), fc.nat(64), (records, lead) => {
        const total = records.reduce((sum, r) => sum + encodedSize(r), lead);
        const buffer = Buffer.alloc(total + 10, 0xee);
        let at = lead;
        for (const record of records) at += encodeRecord(record, buffer, at);
        expect(at).toBe(total);
        at = lead;
        for (const record of records) {
          const decoded = decodeRecord(buffer.subarray(at));
          expect(decoded.ok && decoded.record.sequence === record.sequence && decoded.record.type === record.type).toBe(true);
          at += encodedSize(record);
        }
      }),
    );
  });

  it('rejects a record with any single byte changed', () => {
    fc.assert(
      fc.property(recordArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (record, where, flip) => {
        const bytes = encode(record);
        const at = where % bytes.length;
        bytes[at] = bytes[at]! ^ flip;
        expect(decodeRecord(bytes).ok).toBe(false);
      }),
    );
  });

  it('rejects every truncation of a record', () => {
    fc.assert(
      fc.property(recordArb, fc.nat(), (record, cut) => {
        const bytes = encode(record);
        const decoded = decodeRecord(bytes.subarray(0, cut % bytes.length));
        expect(decoded.ok).toBe(false);
      }),
    );
  });

  it('names the reason for a rejection', () => {
    const bytes = encode({ type: RecordType.Write, offset: 4096, data: Buffer.alloc(100, 1), sequence: 7, time: 1000 });
    expect(decodeRecord(Buffer.alloc(200))).toEqual({ ok: false, reason: 'bad magic' });
    expect(decodeRecord(bytes.subarray(0, 20))).toEqual({ ok: false, reason: 'short header' });
    expect(decodeRecord(bytes.subarray(0, bytes.length - 1))).toEqual({ ok: false, reason: 'truncated payload' });
    const flipped = Buffer.from(bytes);
    flipped[HEADER_SIZE + 50] = flipped[HEADER_SIZE + 50]! ^ 1;
    expect(decodeRecord(flipped)).toEqual({ ok: false, reason: 'crc mismatch' });
    const badType = reseal(Buffer.from(bytes).fill(9, 8, 9));
    expect(decodeRecord(badType)).toEqual({ ok: false, reason: 'unknown record type 9' });
    const huge = Buffer.from(bytes);
    // The largest payload: the largest data, its offset, and an aligned Write's padding.
    huge.writeUInt32LE(MAX_RECORD_PAYLOAD + 12 + ALIGN_BYTES + 1, 4);
    expect(decodeRecord(huge)).toEqual({ ok: false, reason: 'implausible length' });
  });

  it('rejects well-sealed records whose payload does not fit their type', () => {
    // A write needs at least its 8-byte offset.
    const shortWrite = Buffer.alloc(HEADER_SIZE + 4);
    shortWrite.writeUInt32LE(4, 4);
    shortWrite.writeUInt8(RecordType.Write, 8);
    shortWrite.writeUInt32LE(RECORD_MAGIC, 12);
    shortWrite.writeBigUInt64LE(1n, 16);
    expect(decodeRecord(reseal(shortWrite)).ok).toBe(false);
    // A zero record has exactly offset and length.
    const zero = encode({ type: RecordType.Zero, offset: 0, length: 10, sequence: 1, time: 1 });
    const longZero = Buffer.concat([zero, Buffer.alloc(8)]);
    longZero.writeUInt32LE(24, 4);
    expect(decodeRecord(reseal(longZero))).toEqual({ ok: false, reason: 'bad zero payload' });
    // A marker whose name length points past the payload.
    const marker = encode({ type: RecordType.Marker, name: 'm', group: '', sequence: 1, time: 1 });
    marker.writeUInt32LE(1000, HEADER_SIZE);
    expect(decodeRecord(reseal(marker))).toEqual({ ok: false, reason: 'malformed payload' });
  });

  it('a buffer of zeros never checks out, whatever its length', () => {
    for (const length of [0, 1, HEADER_SIZE, HEADER_SIZE + 8, 4096]) expect(decodeRecord(Buffer.alloc(length)).ok).toBe(false);
  });

  it('sizes records by type', () => {
    expect(encodedSize({ type: RecordType.Write, offset: 0, data: Buffer.alloc(4096) })).toBe(HEADER_SIZE + 8 + 4096);
    expect(encodedSize({ type: RecordType.Trim, offset: 0, length: 1 << 30 })).toBe(HEADER_SIZE + 16);
    expect(encodedSize({ type: RecordType.Marker, name: 'é', group: 'g' })).toBe(HEADER_SIZE + 4 + 2 + 4 + 1);
    expect(encodedSize({ type: RecordType.Snapshot, name: 'snap' })).toBe(HEADER_SIZE + 4 + 4);
  });

  it('reports the byte range each record changes', () => {
    expect(recordExtent({ type: RecordType.Write, offset: 512, data: Buffer.alloc(100), sequence: 1, time: 0 })).toEqual({ offset: 512, length: 100 });
    expect(recordExtent({ type: RecordType.Zero, offset: 4096, length: 8192, sequence: 1, time: 0 })).toEqual({ offset: 4096, length: 8192 });
    expect(recordExtent({ type: RecordType.Trim, offset: 0, length: 1, sequence: 1, time: 0 })).toEqual({ offset: 0, length: 1 });
    expect(recordExtent({ type: RecordType.Marker, name: 'm', group: '', sequence: 1, time: 0 })).toEqual({ offset: 0, length: 0 });
    expect(recordExtent({ type: RecordType.Snapshot, name: 's', sequence: 1, time: 0 })).toEqual({ offset: 0, length: 0 });
  });
});

describe('aligned writes', () => {
  it('decode to the same Write, whatever the padding, with the CRC over padding and data', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 9000 }), fc.integer({ min: 0, max: 4095 }), offset, sequence, (bytes, pad, at, seq) => {
        const record: JournalRecord = { type: RecordType.Write, offset: at, data: Buffer.from(bytes), sequence: seq, time: 7 };
        const buffer = Buffer.alloc(encodedSize(record, pad));
        expect(encodeRecord(record, buffer, 0, pad)).toBe(buffer.length);
        expect(buffer.readUInt8(8)).toBe(ALIGNED_WRITE_TYPE);
        const header = parseHeader(buffer);
        expect(header).toMatchObject({ ok: true, type: RecordType.Write, aligned: true, payloadLength: 12 + pad + bytes.length });
        expect(writeDataStart({ aligned: true }, buffer)).toBe(ALIGNED_PAD_OFFSET + pad);
        expect(buffer.subarray(ALIGNED_PAD_OFFSET + pad).equals(Buffer.from(bytes))).toBe(true);
        expect(decodeRecord(buffer)).toEqual({ ok: true, record });
        // A flipped padding byte fails the CRC like any other.
        if (pad > 0) {
          buffer[ALIGNED_PAD_OFFSET]! ^= 1;
          expect(decodeRecord(buffer)).toEqual({ ok: false, reason: 'crc mismatch' });
        }
      }),
      { numRuns: 200 },
    );
  });

  it('refuse padding that runs past the payload', () => {
    const record: JournalRecord = { type: RecordType.Write, offset: 0, data: Buffer.alloc(10), sequence: 1, time: 0 };
    const buffer = Buffer.alloc(encodedSize(record, 3));
    encodeRecord(record, buffer, 0, 3);
    buffer.writeUInt32LE(100, HEADER_SIZE + 8);
    expect(decodeRecord(reseal(buffer))).toEqual({ ok: false, reason: 'padding past payload' });
  });
});
