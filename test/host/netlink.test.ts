import { KernelNbd } from '../../src/host/kernel-nbd.js';
import { libc } from '../../src/host/libc.js';
import {
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  connectMessage,
  connectedIndex,
  deviceStatuses,
  disconnectMessage,
  reconfigureMessage,
  statusMessage,
} from '../../src/host/nbd-netlink.js';
import { GENL_ID_CTRL, NLA_F_NESTED, NLMSG_ERROR, decodeAttrs, decodeMessages, encodeAttrs, familyIdOf, familyRequest, type RawAttr } from '../../src/host/netlink.js';

/** The attributes of an encoded generic netlink request (after the 16 + 4 header bytes). */
function attrsOf(message: Buffer): RawAttr[] {
  return decodeAttrs(message.subarray(20));
}

function find(attrs: RawAttr[], type: number): RawAttr {
  const attr = attrs.find((a) => a.type === type);
  if (!attr) throw new Error(`no attribute ${type}`);
  return attr;
}

describe('netlink encoding', () => {
  it('lays out attributes with their length, type and padding to 4 bytes', () => {
    const bytes = encodeAttrs([
      { type: 1, value: { u8: 7 } },
      { type: 2, value: { u32: 0xdeadbeef } },
      { type: 3, value: { string: 'nbd' } },
    ]);
    // u8: 4 + 1 = 5, padded to 8; u32: 8; "nbd\0": 4 + 4 = 8.
    expect(bytes.length).toBe(24);
    expect(bytes.readUInt16LE(0)).toBe(5);
    expect(bytes.readUInt16LE(2)).toBe(1);
    expect(bytes[4]).toBe(7);
    expect(bytes.subarray(5, 8)).toEqual(Buffer.alloc(3));
    expect(bytes.readUInt16LE(8)).toBe(8);
    expect(bytes.readUInt32LE(12)).toBe(0xdeadbeef);
    expect(bytes.subarray(20, 24).toString('latin1')).toBe('nbd\0');
    expect(decodeAttrs(bytes).map((a) => [a.type, a.payload.length])).toEqual([
      [1, 1],
      [2, 4],
      [3, 4],
    ]);
  });

  it('marks nested attributes and decodes them back', () => {
    const bytes = encodeAttrs([{ type: 7, value: { nested: [{ type: 1, value: { u64: 2n ** 40n } }] } }]);
    expect(bytes.readUInt16LE(2)).toBe(7 | NLA_F_NESTED);
    const [outer] = decodeAttrs(bytes);
    expect(outer!.type).toBe(7);
    expect(decodeAttrs(outer!.payload)[0]!.payload.readBigUInt64LE(0)).toBe(2n ** 40n);
  });

  it('refuses an attribute that claims more bytes than there are', () => {
    const bytes = encodeAttrs([{ type: 1, value: { u32: 1 } }]);
    bytes.writeUInt16LE(40, 0);
    expect(() => decodeAttrs(bytes)).toThrow(/does not fit/);
    const short = Buffer.from([2, 0, 1, 0]);
    expect(() => decodeAttrs(short)).toThrow(/does not fit/);
  });

  it('writes the netlink and generic netlink headers of a request', () => {
    const message = familyRequest('nbd', 42);
    expect(message.readUInt32LE(0)).toBe(message.length);
    expect(message.readUInt16LE(4)).toBe(GENL_ID_CTRL);
    expect(message.readUInt16LE(6)).toBe(0x1 | 0x4); // request, ack
    expect(message.readUInt32LE(8)).toBe(42);
    expect(message[16]).toBe(3); // CTRL_CMD_GETFAMILY
    expect(find(attrsOf(message), 2).payload.toString('latin1')).toBe('nbd\0');
  });

  it('decodes acknowledgements, errors and replies from one datagram', () => {
    const ack = Buffer.alloc(36);
    ack.writeUInt32LE(36, 0);
    ack.writeUInt16LE(NLMSG_ERROR, 4);
    ack.writeUInt32LE(9, 8);
    ack.writeInt32LE(-22, 16);
    const reply = familyRequest('x', 9);
    reply.writeUInt16LE(0x22, 4);
    const idAttr = encodeAttrs([{ type: 1, value: { u16: 0x25 } }]);
    const withId = Buffer.concat([reply.subarray(0, 20), idAttr]);
    withId.writeUInt32LE(withId.length, 0);
    const messages = decodeMessages(Buffer.concat([withId, ack]));
    expect(messages).toHaveLength(2);
    expect(familyIdOf(messages[0]!)).toBe(0x25);
    expect(messages[1]).toEqual({ kind: 'error', sequence: 9, errno: 22 });
  });
});

describe('nbd netlink messages', () => {
  it('connects with size, block size, flags, dead-connection timeout, sockets and backend, and no request timeout', () => {
    const message = connectMessage(0x1c, 5, { size: 1 << 30, blockSize: 4096, serverFlags: NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY, deadConnTimeoutS: 120, sockets: [11], backend: 'tidemark:v1' });
    expect(message.readUInt16LE(4)).toBe(0x1c);
    expect(message[16]).toBe(1); // NBD_CMD_CONNECT
    expect(message[17]).toBe(1); // version
    const attrs = attrsOf(message);
    expect(find(attrs, 2).payload.readBigUInt64LE(0)).toBe(1n << 30n);
    expect(find(attrs, 3).payload.readBigUInt64LE(0)).toBe(4096n);
    expect(find(attrs, 5).payload.readBigUInt64LE(0)).toBe(BigInt(NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY));
    expect(find(attrs, 6).payload.readBigUInt64LE(0)).toBe(0n);
    expect(find(attrs, 8).payload.readBigUInt64LE(0)).toBe(120n);
    expect(find(attrs, 10).payload.toString('latin1')).toBe('tidemark:v1\0');
    expect(attrs.some((a) => a.type === 4)).toBe(false); // NBD_ATTR_TIMEOUT
    expect(attrs.some((a) => a.type === 1)).toBe(false); // no index: the kernel picks
    const [item] = decodeAttrs(find(attrs, 7).payload);
    expect(item!.type).toBe(1); // NBD_SOCK_ITEM
    expect(decodeAttrs(item!.payload)[0]!.payload.readUInt32LE(0)).toBe(11); // NBD_SOCK_FD
  });

  it('refuses a size that is not a whole number of blocks', () => {
    expect(() => connectMessage(1, 1, { size: 4097, blockSize: 4096, serverFlags: 0, deadConnTimeoutS: 1, sockets: [3] })).toThrow(/multiple of the block size/);
  });

  it('reconfigures a device with a new socket, or a new size, naming it by index and backend', () => {
    const reconnect = attrsOf(reconfigureMessage(0x1c, 6, { index: 3, sockets: [9], backend: 'tidemark:v1' }));
    expect(find(reconnect, 1).payload.readUInt32LE(0)).toBe(3);
    expect(reconnect.some((a) => a.type === 2)).toBe(false);
    expect(find(reconnect, 10).payload.toString('latin1')).toBe('tidemark:v1\0');
    expect(find(reconnect, 7)).toBeDefined();
    const resize = attrsOf(reconfigureMessage(0x1c, 7, { index: 3, size: 2 * 2 ** 30, backend: 'tidemark:v1' }));
    expect(find(resize, 2).payload.readBigUInt64LE(0)).toBe(2n * 2n ** 30n);
    expect(find(resize, 3).payload.readBigUInt64LE(0)).toBe(4096n);
    expect(resize.some((a) => a.type === 7)).toBe(false);
    expect(reconfigureMessage(1, 1, { index: 0 })[16]).toBe(3);
  });

  it('disconnects and asks status by index', () => {
    const disconnect = disconnectMessage(0x1c, 8, 4);
    expect(disconnect[16]).toBe(2);
    expect(find(attrsOf(disconnect), 1).payload.readUInt32LE(0)).toBe(4);
    expect(statusMessage(0x1c, 9)[16]).toBe(5);
    expect(attrsOf(statusMessage(0x1c, 9))).toEqual([]);
  });

  it('reads the index a connect answers with and the device list of a status reply', () => {
    const attrs = encodeAttrs([
      {
        type: 9,
        value: {
          nested: [
            { type: 1, value: { nested: [{ type: 1, value: { u32: 0 } }, { type: 2, value: { u8: 1 } }] } },
            { type: 1, value: { nested: [{ type: 1, value: { u32: 5 } }, { type: 2, value: { u8: 0 } }] } },
          ],
        },
      },
    ]);
    const status = { kind: 'genl' as const, type: 0x1c, sequence: 1, command: 5, attrs: decodeAttrs(attrs) };
    expect(deviceStatuses(status)).toEqual([
      { index: 0, connected: true },
      { index: 5, connected: false },
    ]);
    const connect = { kind: 'genl' as const, type: 0x1c, sequence: 1, command: 1, attrs: decodeAttrs(encodeAttrs([{ type: 1, value: { u32: 12 } }])) };
    expect(connectedIndex(connect)).toBe(12);
  });
});

describe('netlink on this kernel', () => {
  // The controller family exists in every Linux kernel, nbd module or not: a real round trip
  // through koffi, the socket, the kernel's answer and the decoder.
  it('resolves the generic netlink controller through the kernel', async () => {
    await expect(new KernelNbd(libc()).resolveFamily('nlctrl')).resolves.toBe(GENL_ID_CTRL);
  });

  it('says to load the module when a family is missing', async () => {
    await expect(new KernelNbd(libc()).resolveFamily('tdmk-none')).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringContaining('no generic netlink family') });
  });

  it('makes connected close-on-exec socket pairs', async () => {
    const sys = libc();
    const [a, b] = sys.socketPair();
    expect(a).toBeGreaterThan(2);
    expect(b).toBeGreaterThan(2);
    const net = await import('node:net');
    const left = new net.Socket({ fd: a, readable: true, writable: true });
    const right = new net.Socket({ fd: b, readable: true, writable: true });
    const got = new Promise<string>((resolve) => right.once('data', (d: Buffer) => resolve(d.toString())));
    left.write('hello');
    await expect(got).resolves.toBe('hello');
    left.destroy();
    right.destroy();
  });
});
