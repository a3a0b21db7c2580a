/**
 * Generic netlink messages, encoded and decoded without any I/O (rfc3549, and the kernel's
 * include/uapi/linux/netlink.h and genetlink.h for the layouts). Netlink is in the host's
 * byte order; every architecture tidemark ships for is little-endian, so the encoding is.
 */

/** struct nlmsghdr: length, type, flags, sequence, port id. */
export const NLMSG_HEADER_BYTES = 16;
/** struct genlmsghdr: command, version, reserved. */
export const GENL_HEADER_BYTES = 4;
/** struct nlattr: length, type. */
const ATTR_HEADER_BYTES = 4;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
export const NLMSG_ERROR = 0x2;
export const NLMSG_DONE = 0x3;
/** Set on the type of an attribute whose payload is more attributes. */
export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = ~(NLA_F_NESTED | 0x4000) & 0xffff;

/** The controller family: resolves a family name (such as "nbd") to its message type. */
export const GENL_ID_CTRL = 0x10;
export const CTRL_CMD_GETFAMILY = 3;
export const CTRL_ATTR_FAMILY_ID = 1;
export const CTRL_ATTR_FAMILY_NAME = 2;

const align4 = (n: number) => (n + 3) & ~3;

/** One attribute to encode: a typed scalar, a string, raw bytes, or nested attributes. */
export type AttrValue =
  | { u8: number }
  | { u16: number }
  | { u32: number }
  | { u64: bigint | number }
  | { string: string }
  | { bytes: Buffer }
  | { nested: Attr[] };

export interface Attr {
  type: number;
  value: AttrValue;
}

function payloadOf(value: AttrValue): Buffer {
  if ('u8' in value) return Buffer.from([value.u8 & 0xff]);
  if ('u16' in value) {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(value.u16);
    return b;
  }
  if ('u32' in value) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value.u32 >>> 0);
    return b;
  }
  if ('u64' in value) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(value.u64));
    return b;
  }
  // NLA_NUL_STRING policies want the terminating NUL inside the attribute.
  if ('string' in value) return Buffer.concat([Buffer.from(value.string, 'utf8'), Buffer.alloc(1)]);
  if ('bytes' in value) return value.bytes;
  return encodeAttrs(value.nested);
}

/** Attributes laid out one after another, each padded to 4 bytes. */
export function encodeAttrs(attrs: Attr[]): Buffer {
  const parts: Buffer[] = [];
  for (const attr of attrs) {
    const payload = payloadOf(attr.value);
    const length = ATTR_HEADER_BYTES + payload.length;
    const header = Buffer.alloc(ATTR_HEADER_BYTES);
    header.writeUInt16LE(length);
    header.writeUInt16LE((attr.type | ('nested' in attr.value ? NLA_F_NESTED : 0)) & 0xffff, 2);
    parts.push(header, payload, Buffer.alloc(align4(length) - length));
  }
  return Buffer.concat(parts);
}

/** A decoded attribute; `payload` is a view into the message. */
export interface RawAttr {
  type: number;
  payload: Buffer;
}

/** Attributes of a payload; a truncated or overlong attribute is an error, not skipped. */
export function decodeAttrs(data: Buffer): RawAttr[] {
  const attrs: RawAttr[] = [];
  let offset = 0;
  while (offset + ATTR_HEADER_BYTES <= data.length) {
    const length = data.readUInt16LE(offset);
    const type = data.readUInt16LE(offset + 2) & NLA_TYPE_MASK;
    if (length < ATTR_HEADER_BYTES || offset + length > data.length) {
      throw new Error(`netlink attribute of ${length} bytes at offset ${offset} does not fit the ${data.length}-byte payload`);
    }
    attrs.push({ type, payload: data.subarray(offset + ATTR_HEADER_BYTES, offset + length) });
    offset += align4(length);
  }
  return attrs;
}

export function attrU8(attr: RawAttr): number {
  if (attr.payload.length < 1) throw new Error(`netlink attribute ${attr.type} is empty, wanted a u8`);
  return attr.payload.readUInt8(0);
}

export function attrU16(attr: RawAttr): number {
  if (attr.payload.length < 2) throw new Error(`netlink attribute ${attr.type} has ${attr.payload.length} bytes, wanted a u16`);
  return attr.payload.readUInt16LE(0);
}

export function attrU32(attr: RawAttr): number {
  if (attr.payload.length < 4) throw new Error(`netlink attribute ${attr.type} has ${attr.payload.length} bytes, wanted a u32`);
  return attr.payload.readUInt32LE(0);
}

/** A generic netlink request: family, command, attributes. */
export interface GenlRequest {
  family: number;
  command: number;
  version: number;
  attrs: Attr[];
  sequence: number;
  flags?: number;
}

export function encodeGenlRequest(request: GenlRequest): Buffer {
  const attrs = encodeAttrs(request.attrs);
  const message = Buffer.alloc(NLMSG_HEADER_BYTES + GENL_HEADER_BYTES + attrs.length);
  message.writeUInt32LE(message.length, 0);
  message.writeUInt16LE(request.family, 4);
  message.writeUInt16LE(request.flags ?? NLM_F_REQUEST | NLM_F_ACK, 6);
  message.writeUInt32LE(request.sequence >>> 0, 8);
  message.writeUInt32LE(0, 12); // port id 0: the kernel fills in ours
  message.writeUInt8(request.command, NLMSG_HEADER_BYTES);
  message.writeUInt8(request.version, NLMSG_HEADER_BYTES + 1);
  attrs.copy(message, NLMSG_HEADER_BYTES + GENL_HEADER_BYTES);
  return message;
}

/** A message read from a netlink socket. */
export type NetlinkMessage =
  | { kind: 'genl'; type: number; sequence: number; command: number; attrs: RawAttr[] }
  /** NLMSG_ERROR: errno 0 is the acknowledgement of a request sent with NLM_F_ACK. */
  | { kind: 'error'; sequence: number; errno: number }
  | { kind: 'done'; sequence: number };

/** Every message in one datagram read from the socket. */
export function decodeMessages(datagram: Buffer): NetlinkMessage[] {
  const messages: NetlinkMessage[] = [];
  let offset = 0;
  while (offset + NLMSG_HEADER_BYTES <= datagram.length) {
    const length = datagram.readUInt32LE(offset);
    if (length < NLMSG_HEADER_BYTES || offset + length > datagram.length) {
      throw new Error(`netlink message of ${length} bytes at offset ${offset} does not fit the ${datagram.length}-byte datagram`);
    }
    const type = datagram.readUInt16LE(offset + 4);
    const sequence = datagram.readUInt32LE(offset + 8);
    const body = datagram.subarray(offset + NLMSG_HEADER_BYTES, offset + length);
    if (type === NLMSG_ERROR) {
      if (body.length < 4) throw new Error('netlink error message without an error code');
      messages.push({ kind: 'error', sequence, errno: -body.readInt32LE(0) });
    } else if (type === NLMSG_DONE) {
      messages.push({ kind: 'done', sequence });
    } else {
      if (body.length < GENL_HEADER_BYTES) throw new Error(`generic netlink message of type ${type} without its header`);
      messages.push({ kind: 'genl', type, sequence, command: body.readUInt8(0), attrs: decodeAttrs(body.subarray(GENL_HEADER_BYTES)) });
    }
    offset += align4(length);
  }
  return messages;
}

/** The request that asks the controller for a family's id. */
export function familyRequest(name: string, sequence: number): Buffer {
  return encodeGenlRequest({ family: GENL_ID_CTRL, command: CTRL_CMD_GETFAMILY, version: 1, sequence, attrs: [{ type: CTRL_ATTR_FAMILY_NAME, value: { string: name } }] });
}

/** The family id in the controller's answer to `familyRequest`. */
export function familyIdOf(message: NetlinkMessage): number | undefined {
  if (message.kind !== 'genl') return undefined;
  const attr = message.attrs.find((a) => a.type === CTRL_ATTR_FAMILY_ID);
  return attr ? attrU16(attr) : undefined;
}
