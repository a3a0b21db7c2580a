import { attrU32, attrU8, decodeAttrs, encodeGenlRequest, type Attr, type NetlinkMessage } from './netlink.js';

/**
 * The kernel nbd driver's generic netlink family (include/uapi/linux/nbd-netlink.h): the
 * messages tidemark sends to connect, reconnect, resize and disconnect /dev/nbdN, and the
 * replies it reads. Pure encoding; `KernelNbd` does the I/O.
 */
export const NBD_FAMILY_NAME = 'nbd';
export const NBD_FAMILY_VERSION = 1;

export const NbdCommand = { Connect: 1, Disconnect: 2, Reconfigure: 3, Status: 5 } as const;

const ATTR_INDEX = 1;
const ATTR_SIZE_BYTES = 2;
const ATTR_BLOCK_SIZE_BYTES = 3;
const ATTR_SERVER_FLAGS = 5;
const ATTR_CLIENT_FLAGS = 6;
const ATTR_SOCKETS = 7;
const ATTR_DEAD_CONN_TIMEOUT = 8;
const ATTR_DEVICE_LIST = 9;
const ATTR_BACKEND_IDENTIFIER = 10;
const SOCK_ITEM = 1;
const SOCK_FD = 1;
const DEVICE_ITEM = 1;
const DEVICE_INDEX = 1;
const DEVICE_CONNECTED = 2;

/** Transmission flags the kernel acts on (include/uapi/linux/nbd.h), as a server would send them. */
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_SEND_TRIM = 1 << 5;

export interface ConnectRequest {
  /** Export size in bytes. */
  size: number;
  blockSize: number;
  /** Transmission flags, as the handshake would have reported them. */
  serverFlags: number;
  /** Seconds the kernel holds I/O for a new socket after the connection dies. */
  deadConnTimeoutS: number;
  /** Connected stream sockets, as file descriptors of the calling process. */
  sockets: number[];
  /** Shown in /sys/block/nbdN/backend, and checked by the kernel on RECONFIGURE. */
  backend?: string;
  /** A specific device; absent lets the kernel pick (or create) a free one. */
  index?: number;
}

function socketsAttr(fds: number[]): Attr {
  return { type: ATTR_SOCKETS, value: { nested: fds.map((fd) => ({ type: SOCK_ITEM, value: { nested: [{ type: SOCK_FD, value: { u32: fd } }] } })) } };
}

function checkSize(size: number, blockSize: number): void {
  if (!Number.isSafeInteger(size) || size <= 0 || !Number.isSafeInteger(blockSize) || blockSize <= 0 || size % blockSize !== 0) {
    throw new Error(`device size ${size} must be a positive multiple of the block size ${blockSize}`);
  }
}

export function connectMessage(family: number, sequence: number, request: ConnectRequest): Buffer {
  checkSize(request.size, request.blockSize);
  const attrs: Attr[] = [
    { type: ATTR_SIZE_BYTES, value: { u64: request.size } },
    { type: ATTR_BLOCK_SIZE_BYTES, value: { u64: request.blockSize } },
    { type: ATTR_SERVER_FLAGS, value: { u64: request.serverFlags } },
    // No destroy-on-disconnect, no disconnect-on-close: the device must outlive the daemon.
    { type: ATTR_CLIENT_FLAGS, value: { u64: 0 } },
    { type: ATTR_DEAD_CONN_TIMEOUT, value: { u64: request.deadConnTimeoutS } },
    socketsAttr(request.sockets),
  ];
  // No NBD_ATTR_TIMEOUT: a request timeout would cut a connection whose server is only slow
  // (a volume stalled on a full disk); a dead server is what the dead-connection timeout is for.
  if (request.index !== undefined) attrs.unshift({ type: ATTR_INDEX, value: { u32: request.index } });
  if (request.backend !== undefined) attrs.push({ type: ATTR_BACKEND_IDENTIFIER, value: { string: request.backend } });
  return encodeGenlRequest({ family, command: NbdCommand.Connect, version: NBD_FAMILY_VERSION, sequence, attrs });
}

export interface ReconfigureRequest {
  index: number;
  /** New sockets, each replacing a dead one. */
  sockets?: number[];
  /** A new size (online resize); the block size must come with it. */
  size?: number;
  blockSize?: number;
  deadConnTimeoutS?: number;
  /** Must equal the backend given at connect, or the kernel refuses the call. */
  backend?: string;
}

export function reconfigureMessage(family: number, sequence: number, request: ReconfigureRequest): Buffer {
  const attrs: Attr[] = [{ type: ATTR_INDEX, value: { u32: request.index } }];
  if (request.size !== undefined) {
    const blockSize = request.blockSize ?? 4096;
    checkSize(request.size, blockSize);
    attrs.push({ type: ATTR_SIZE_BYTES, value: { u64: request.size } }, { type: ATTR_BLOCK_SIZE_BYTES, value: { u64: blockSize } });
  }
  if (request.deadConnTimeoutS !== undefined) attrs.push({ type: ATTR_DEAD_CONN_TIMEOUT, value: { u64: request.deadConnTimeoutS } });
  if (request.backend !== undefined) attrs.push({ type: ATTR_BACKEND_IDENTIFIER, value: { string: request.backend } });
  if (request.sockets?.length) attrs.push(socketsAttr(request.sockets));
  return encodeGenlRequest({ family, command: NbdCommand.Reconfigure, version: NBD_FAMILY_VERSION, sequence, attrs });
}

export function disconnectMessage(family: number, sequence: number, index: number): Buffer {
  return encodeGenlRequest({ family, command: NbdCommand.Disconnect, version: NBD_FAMILY_VERSION, sequence, attrs: [{ type: ATTR_INDEX, value: { u32: index } }] });
}

/** Asks for one device's state, or every device's when no index is given. */
export function statusMessage(family: number, sequence: number, index?: number): Buffer {
  const attrs: Attr[] = index === undefined ? [] : [{ type: ATTR_INDEX, value: { u32: index } }];
  return encodeGenlRequest({ family, command: NbdCommand.Status, version: NBD_FAMILY_VERSION, sequence, attrs });
}

/** The device index the kernel answers a CONNECT with. */
export function connectedIndex(message: NetlinkMessage): number | undefined {
  if (message.kind !== 'genl') return undefined;
  const attr = message.attrs.find((a) => a.type === ATTR_INDEX);
  return attr ? attrU32(attr) : undefined;
}

export interface DeviceStatus {
  index: number;
  /** The device has a configuration (a CONNECT not yet undone), live socket or not. */
  connected: boolean;
}

/** The devices listed in a STATUS reply. */
export function deviceStatuses(message: NetlinkMessage): DeviceStatus[] {
  if (message.kind !== 'genl') return [];
  const list = message.attrs.find((a) => a.type === ATTR_DEVICE_LIST);
  if (!list) return [];
  const devices: DeviceStatus[] = [];
  for (const item of decodeAttrs(list.payload)) {
    if (item.type !== DEVICE_ITEM) continue;
    const fields = decodeAttrs(item.payload);
    const index = fields.find((f) => f.type === DEVICE_INDEX);
    const connected = fields.find((f) => f.type === DEVICE_CONNECTED);
    if (!index) continue;
    devices.push({ index: attrU32(index), connected: connected ? attrU8(connected) !== 0 : false });
  }
  return devices;
}
