import {
  IHAVEOPT,
  NBDMAGIC,
  OPTION_REPLY_MAGIC,
  REPLY_FLAG_DONE,
  REPLY_TYPE_ERROR,
  SIMPLE_REPLY_BYTES,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_HEADER_BYTES,
  STRUCTURED_REPLY_MAGIC,
} from './protocol.js';

/** One parsed transmission request header; the handle stays as two words to avoid BigInt. */
export interface RequestHeader {
  flags: number;
  type: number;
  handleHi: number;
  handleLo: number;
  /** Byte offset; offsets beyond 2^53 are clamped to a value past any export. */
  offset: number;
  length: number;
}

export function parseRequestHeader(b: Buffer): { magic: number; header: RequestHeader } {
  // magic 0..3, flags 4..5, type 6..7, handle 8..15, offset 16..23, length 24..27
  const offsetHi = b.readUInt32BE(16);
  const offsetLo = b.readUInt32BE(20);
  return {
    magic: b.readUInt32BE(0),
    header: {
      flags: b.readUInt16BE(4),
      type: b.readUInt16BE(6),
      handleHi: b.readUInt32BE(8),
      handleLo: b.readUInt32BE(12),
      offset: offsetHi >= 0x200000 ? Number.MAX_SAFE_INTEGER : offsetHi * 0x1_0000_0000 + offsetLo,
      length: b.readUInt32BE(24),
    },
  };
}

export function greeting(handshakeFlags: number): Buffer {
  const b = Buffer.allocUnsafe(18);
  b.writeBigUInt64BE(NBDMAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(handshakeFlags, 16);
  return b;
}

export function isOptionMagic(b: Buffer): boolean {
  return b.readBigUInt64BE(0) === IHAVEOPT;
}

/** An option reply: magic, option, reply type, length, data. */
export function optionReply(option: number, type: number, data: Buffer = EMPTY): Buffer {
  const b = Buffer.allocUnsafe(20 + data.length);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 20);
  return b;
}

export function simpleReplyHeader(error: number, handleHi: number, handleLo: number): Buffer {
  const b = Buffer.allocUnsafe(SIMPLE_REPLY_BYTES);
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  b.writeUInt32BE(handleHi, 8);
  b.writeUInt32BE(handleLo, 12);
  return b;
}

/** A structured chunk header with room for `extra` bytes of payload written by the caller. */
export function structuredHeader(flags: number, type: number, handleHi: number, handleLo: number, payloadLength: number, extra = 0): Buffer {
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_BYTES + extra);
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeUInt32BE(handleHi, 8);
  b.writeUInt32BE(handleLo, 12);
  b.writeUInt32BE(payloadLength, 16);
  return b;
}

/** A final NBD_REPLY_TYPE_ERROR chunk carrying a message for the human at the client. */
export function structuredError(error: number, message: string, handleHi: number, handleLo: number): Buffer {
  const text = truncateUtf8(message, 1024);
  const b = structuredHeader(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, handleHi, handleLo, 6 + text.length, 6 + text.length);
  b.writeUInt32BE(error, STRUCTURED_HEADER_BYTES);
  b.writeUInt16BE(text.length, STRUCTURED_HEADER_BYTES + 4);
  text.copy(b, STRUCTURED_HEADER_BYTES + 6);
  return b;
}

/** UTF-8 bytes of `text`, cut at a character boundary to at most `max` bytes. */
export function truncateUtf8(text: string, max: number): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= max) return bytes;
  let end = max;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

/** Reads the length-prefixed strings option data is made of, refusing anything that overruns. */
export class OptionReader {
  private at = 0;

  constructor(private readonly data: Buffer) {}

  get remaining(): number {
    return this.data.length - this.at;
  }

  u16(): number | undefined {
    if (this.remaining < 2) return undefined;
    const v = this.data.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }

  u32(): number | undefined {
    if (this.remaining < 4) return undefined;
    const v = this.data.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }

  /** A string of `length` bytes that must be valid UTF-8 without NUL; undefined otherwise. */
  string(length: number): string | undefined {
    if (length > this.remaining) return undefined;
    const bytes = this.data.subarray(this.at, this.at + length);
    this.at += length;
    return decodeString(bytes);
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true });

export function decodeString(bytes: Buffer): string | undefined {
  if (bytes.includes(0)) return undefined;
  try {
    return decoder.decode(bytes);
  } catch {
    return undefined;
  }
}

const EMPTY = Buffer.alloc(0);
