import { crc32c } from '../util/crc32c.js';

/**
 * One journal record, laid out like a LevelDB log record with a larger header:
 *
 *   offset size field
 *        0    4 crc32c of bytes 4..end (masked so a run of zeros never checks out)
 *        4    4 payload length
 *        8    1 type
 *        9    1 flags (reserved, zero)
 *       10    2 reserved, zero
 *       12    4 magic 0x54444d4b, little-endian like every field: the bytes on disk read
 *                "KMDT" (4b 4d 44 54); start-up searches for it to find the next
 *                record after damage below the checkpoint
 *       16    8 sequence number, dense and increasing within a volume
 *       24    8 time, milliseconds since the epoch, never decreasing within a volume
 *       32    … payload
 */
export const HEADER_SIZE = 32;
/** Where a Write record's data starts, from the start of the record: header, then the offset. */
export const WRITE_PAYLOAD_OFFSET = HEADER_SIZE + 8;
/**
 * The on-disk type of an *aligned* Write: offset (8), pad length P (4), P zero bytes, data.
 * The journal writes one where the data can then start on a filesystem block, so that the
 * image can share the journal's blocks (a reflink) instead of a copy. In memory it is a Write.
 */
export const ALIGNED_WRITE_TYPE = 7;
/** Where an aligned Write's padding starts, from the start of the record. */
export const ALIGNED_PAD_OFFSET = HEADER_SIZE + 12;
/** The block an aligned Write's data starts on; padding is always less. */
export const ALIGN_BYTES = 4096;
export const RECORD_MAGIC = 0x54444d4b;
/** Where the magic lies in a record's header. */
export const MAGIC_OFFSET = 12;
/** Upper bound on one record's payload; larger writes are split into several records. */
export const MAX_RECORD_PAYLOAD = 8 * 1024 * 1024;

export enum RecordType {
  Write = 1,
  Zero = 2,
  Trim = 3,
  Marker = 4,
  Snapshot = 5,
  /** The volume grew to `size` bytes; recorded so replay and history know the size. */
  Resize = 6,
}

export type RecordBody =
  | { type: RecordType.Write; offset: number; data: Buffer }
  | { type: RecordType.Zero | RecordType.Trim; offset: number; length: number }
  | { type: RecordType.Marker; name: string; group: string }
  | { type: RecordType.Snapshot; name: string }
  | { type: RecordType.Resize; size: number };

export type JournalRecord = RecordBody & { sequence: number; time: number };

/** A record's position and shape without its payload, enough to plan a restore. */
export interface RecordHeader {
  type: RecordType;
  sequence: number;
  time: number;
  /** Byte range of the volume the record changes; zero length for markers and snapshots. */
  offset: number;
  length: number;
  /** Where the record's write data starts in its segment file, for reading it later. */
  dataPosition: number;
  /** Total bytes the record occupies in the segment. */
  size: number;
}

const CRC_MASK_DELTA = 0xa282ead8;
const mask = (crc: number) => ((((crc >>> 15) | (crc << 17)) >>> 0) + CRC_MASK_DELTA) >>> 0;

/** Bytes a record takes; `pad` (a Write only) asks for the aligned form with that much padding. */
export function encodedSize(body: RecordBody, pad?: number): number {
  return HEADER_SIZE + payloadSize(body) + (pad === undefined ? 0 : 4 + pad);
}

function payloadSize(body: RecordBody): number {
  switch (body.type) {
    case RecordType.Write:
      return 8 + body.data.length;
    case RecordType.Zero:
    case RecordType.Trim:
      return 16;
    case RecordType.Marker:
      return 4 + Buffer.byteLength(body.name) + 4 + Buffer.byteLength(body.group);
    case RecordType.Snapshot:
      return 4 + Buffer.byteLength(body.name);
    case RecordType.Resize:
      return 8;
  }
}

/** Encodes a record into `target` at `at`; returns the number of bytes written. */
export function encodeRecord(record: JournalRecord, target: Buffer, at = 0, pad?: number): number {
  const head = encodeHead(record, target, at, pad);
  if (record.type !== RecordType.Write) return head;
  record.data.copy(target, at + head);
  return head + record.data.length;
}

/** Bytes of a record before a Write's data (with `pad`, of the aligned form): all of it for other types. */
export function headSize(body: RecordBody, pad?: number): number {
  if (body.type !== RecordType.Write) return encodedSize(body);
  return pad === undefined ? WRITE_PAYLOAD_OFFSET : ALIGNED_PAD_OFFSET + pad;
}

/**
 * Encodes all of a record but a Write's data into `target` at `at`, with the CRC over the
 * whole record, data included; returns `headSize(record, pad)`. The journal writes the data from
 * the caller's buffer beside it, so the payload is never copied in user space.
 */
export function encodeHead(record: JournalRecord, target: Buffer, at = 0, pad?: number): number {
  const aligned = pad !== undefined && record.type === RecordType.Write;
  const head = headSize(record, aligned ? pad : undefined);
  target.writeUInt32LE(payloadSize(record) + (aligned ? 4 + pad : 0), at + 4);
  target.writeUInt8(aligned ? ALIGNED_WRITE_TYPE : record.type, at + 8);
  target.writeUInt8(0, at + 9);
  target.writeUInt16LE(0, at + 10);
  target.writeUInt32LE(RECORD_MAGIC, at + 12);
  writeUint64(target, record.sequence, at + 16);
  writeUint64(target, record.time, at + 24);
  let p = at + HEADER_SIZE;
  switch (record.type) {
    case RecordType.Write:
      writeUint64(target, record.offset, p);
      if (aligned) {
        target.writeUInt32LE(pad, p + 8);
        target.fill(0, p + 12, p + 12 + pad);
      }
      break;
    case RecordType.Zero:
    case RecordType.Trim:
      writeUint64(target, record.offset, p);
      writeUint64(target, record.length, p + 8);
      break;
    case RecordType.Marker:
      p = writeString(target, p, record.name);
      writeString(target, p, record.group);
      break;
    case RecordType.Snapshot:
      writeString(target, p, record.name);
      break;
    case RecordType.Resize:
      writeUint64(target, record.size, p);
      break;
  }
  let crc = crc32c(target.subarray(at + 4, at + head));
  if (record.type === RecordType.Write) crc = crc32c(record.data, crc);
  target.writeUInt32LE(mask(crc), at);
  return head;
}

/**
 * Writes a non-negative safe integer as 64 bits, little-endian, in two 32-bit halves: the
 * same bytes as writeBigUInt64LE without making a BigInt, which alone took 1% of the event
 * loop's time under tens of thousands of small writes a second.
 */
function writeUint64(target: Buffer, value: number, at: number): void {
  target.writeUInt32LE(value >>> 0, at);
  target.writeUInt32LE(Math.floor(value / 0x1_0000_0000), at + 4);
}

function writeString(target: Buffer, at: number, text: string): number {
  const length = target.write(text, at + 4, 'utf8');
  target.writeUInt32LE(length, at);
  return at + 4 + length;
}

export type HeaderCheck =
  /** `aligned`: a Write in the aligned form (see ALIGNED_WRITE_TYPE). */
  | { ok: true; type: RecordType; aligned: boolean; payloadLength: number; sequence: number; time: number }
  | { ok: false; reason: string };

/** Checks the fixed part of a header; the CRC needs the payload and is checked by `decodeRecord`. */
export function parseHeader(header: Buffer): HeaderCheck {
  if (header.length < HEADER_SIZE) return { ok: false, reason: 'short header' };
  if (header.readUInt32LE(MAGIC_OFFSET) !== RECORD_MAGIC) return { ok: false, reason: 'bad magic' };
  const stored = header.readUInt8(8);
  const aligned = stored === ALIGNED_WRITE_TYPE;
  const type = aligned ? RecordType.Write : stored;
  if (!(type in RecordType)) return { ok: false, reason: `unknown record type ${type}` };
  const payloadLength = header.readUInt32LE(4);
  if (payloadLength > MAX_RECORD_PAYLOAD + 12 + ALIGN_BYTES) return { ok: false, reason: 'implausible length' };
  return {
    ok: true,
    type,
    aligned,
    payloadLength,
    sequence: Number(header.readBigUInt64LE(16)),
    time: Number(header.readBigUInt64LE(24)),
  };
}

/** Decodes a whole record (header and payload in `bytes`), or says why it is not valid. */
export function decodeRecord(bytes: Buffer): { ok: true; record: JournalRecord } | { ok: false; reason: string } {
  const header = parseHeader(bytes);
  if (!header.ok) return header;
  const size = HEADER_SIZE + header.payloadLength;
  if (bytes.length < size) return { ok: false, reason: 'truncated payload' };
  if (mask(crc32c(bytes.subarray(4, size))) !== bytes.readUInt32LE(0)) return { ok: false, reason: 'crc mismatch' };
  const p = bytes.subarray(HEADER_SIZE, size);
  const base = { sequence: header.sequence, time: header.time };
  try {
    switch (header.type) {
      case RecordType.Write: {
        const start = header.aligned ? 12 + p.readUInt32LE(8) : 8;
        if (start > p.length) return { ok: false, reason: 'padding past payload' };
        return { ok: true, record: { ...base, type: RecordType.Write, offset: Number(p.readBigUInt64LE(0)), data: p.subarray(start) } };
      }
      case RecordType.Zero:
      case RecordType.Trim:
        if (p.length !== 16) return { ok: false, reason: 'bad zero payload' };
        return {
          ok: true,
          record: { ...base, type: header.type, offset: Number(p.readBigUInt64LE(0)), length: Number(p.readBigUInt64LE(8)) },
        };
      case RecordType.Marker: {
        const [name, next] = readString(p, 0);
        const [group] = readString(p, next);
        return { ok: true, record: { ...base, type: RecordType.Marker, name, group } };
      }
      case RecordType.Snapshot:
        return { ok: true, record: { ...base, type: RecordType.Snapshot, name: readString(p, 0)[0] } };
      case RecordType.Resize:
        if (p.length !== 8) return { ok: false, reason: 'bad resize payload' };
        return { ok: true, record: { ...base, type: RecordType.Resize, size: Number(p.readBigUInt64LE(0)) } };
    }
  } catch {
    return { ok: false, reason: 'malformed payload' };
  }
  return { ok: false, reason: 'unknown record type' };
}

function readString(p: Buffer, at: number): [string, number] {
  const length = p.readUInt32LE(at);
  if (at + 4 + length > p.length) throw new RangeError('string past payload');
  return [p.toString('utf8', at + 4, at + 4 + length), at + 4 + length];
}

/** The byte range of the volume a record changes (zero length for markers and snapshots). */
export function recordExtent(record: JournalRecord): { offset: number; length: number } {
  switch (record.type) {
    case RecordType.Write:
      return { offset: record.offset, length: record.data.length };
    case RecordType.Zero:
    case RecordType.Trim:
      return { offset: record.offset, length: record.length };
    default:
      return { offset: 0, length: 0 };
  }
}

/**
 * Where a Write's data starts, from the start of its record, given the first
 * ALIGNED_PAD_OFFSET bytes of the record (enough for either form).
 */
export function writeDataStart(check: { aligned: boolean }, head: Buffer): number {
  return check.aligned ? ALIGNED_PAD_OFFSET + head.readUInt32LE(WRITE_PAYLOAD_OFFSET) : WRITE_PAYLOAD_OFFSET;
}
