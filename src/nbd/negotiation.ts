import type { Logger } from '../util/log.js';
import { formatSize } from '../util/sizes.js';
import type { NbdBackend } from './backend.js';
import { OptionReader, decodeString, optionReply } from './frames.js';
import { listContexts, selectContexts, type SelectedContext } from './meta.js';
import * as P from './protocol.js';

/** What the negotiation needs from its connection. */
export interface NegotiationHost {
  readonly id: number;
  send(frame: Buffer): void;
  /** Enters the transmission phase on a volume and marks it in use; false if it is gone. */
  attach(volume: string, size: number, flags: number): boolean;
  /** Ends the session after the current replies (NBD_OPT_ABORT). */
  endSession(): void;
  /** Drops the connection at once, for what the protocol cannot answer. */
  drop(reason: string): void;
}

const KNOWN_OPTIONS = new Set<number>([
  P.Option.ExportName,
  P.Option.Abort,
  P.Option.List,
  P.Option.Info,
  P.Option.Go,
  P.Option.StructuredReply,
  P.Option.ListMetaContext,
  P.Option.SetMetaContext,
]);

/**
 * The option haggling of the fixed newstyle handshake: the state it builds (structured
 * replies, selected metadata contexts) and the replies to each option.
 */
export class Negotiation {
  /** Client flags sent after the greeting. */
  clientFlags = 0;
  structured = false;
  private contexts: SelectedContext[] = [];
  private contextsExport: string | undefined;

  constructor(
    private readonly backend: NbdBackend,
    private readonly logger: Logger,
    private readonly maxRequestBytes: number,
    private readonly host: NegotiationHost,
  ) {}

  static isKnown(option: number): boolean {
    return KNOWN_OPTIONS.has(option);
  }

  /** Transmission flags of every export, given what has been negotiated. */
  exportFlags(): number {
    return (
      P.TFLAG_HAS_FLAGS |
      P.TFLAG_SEND_FLUSH |
      P.TFLAG_SEND_FUA |
      P.TFLAG_SEND_TRIM |
      P.TFLAG_SEND_WRITE_ZEROES |
      P.TFLAG_SEND_FAST_ZERO |
      P.TFLAG_SEND_CACHE |
      // A flush syncs the volume's one journal, so it covers writes answered on any connection.
      P.TFLAG_CAN_MULTI_CONN |
      (this.structured ? P.TFLAG_SEND_DF : 0)
    );
  }

  /** The contexts selected for a volume; none when they were selected for another export. */
  contextsFor(volume: string): SelectedContext[] {
    return this.contextsExport === volume ? this.contexts : [];
  }

  handle(option: number, data: Buffer): void {
    switch (option) {
      case P.Option.ExportName:
        return this.exportName(data);
      case P.Option.Abort:
        this.reply(option, P.REP_ACK);
        return this.host.endSession();
      case P.Option.List:
        return this.list(data);
      case P.Option.Info:
      case P.Option.Go:
        return this.info(option, data);
      case P.Option.StructuredReply:
        if (data.length !== 0) return this.refuse(option, P.REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        this.structured = true;
        return this.reply(option, P.REP_ACK);
      case P.Option.ListMetaContext:
      case P.Option.SetMetaContext:
        return this.metaContext(option, data);
      default:
        return this.refuse(option, P.REP_ERR_UNSUP, `option ${option} is not supported by tidemark`);
    }
  }

  reply(option: number, type: number, data?: Buffer): void {
    this.host.send(optionReply(option, type, data));
  }

  refuse(option: number, type: number, message: string): void {
    this.logger.debug('nbd option refused', { connection: this.host.id, option, reply: type >>> 0, message });
    this.host.send(optionReply(option, type, Buffer.from(message, 'utf8').subarray(0, P.MAX_STRING_BYTES)));
  }

  /** Size and block size of the volume an export name refers to, if it exists. */
  private lookup(name: string): { size: number; blockSize: number } | undefined {
    if (name === '' || !this.backend.has(name)) return undefined;
    const info = this.backend.volumeInfo(name);
    return { size: info.size, blockSize: info.blockSize };
  }

  private exportName(data: Buffer): void {
    const name = decodeString(data);
    const found = name === undefined ? undefined : this.lookup(name);
    const flags = this.exportFlags();
    if (name === undefined || !found || !this.host.attach(name, found.size, flags)) {
      // NBD_OPT_EXPORT_NAME cannot carry an error; the spec says to end the session.
      return this.host.drop(`unknown export ${name === undefined ? '(not UTF-8)' : quote(name)} in NBD_OPT_EXPORT_NAME`);
    }
    const noZeroes = (this.clientFlags & P.FLAG_C_NO_ZEROES) !== 0;
    const reply = Buffer.alloc(noZeroes ? 10 : 134);
    reply.writeBigUInt64BE(BigInt(found.size), 0);
    reply.writeUInt16BE(flags, 8);
    this.host.send(reply);
  }

  private list(data: Buffer): void {
    if (data.length !== 0) return this.refuse(P.Option.List, P.REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
    for (const volume of this.backend.listVolumes()) {
      const name = Buffer.from(volume.name, 'utf8');
      const body = Buffer.allocUnsafe(4 + name.length);
      body.writeUInt32BE(name.length, 0);
      name.copy(body, 4);
      this.reply(P.Option.List, P.REP_SERVER, body);
    }
    this.reply(P.Option.List, P.REP_ACK);
  }

  private info(option: number, data: Buffer): void {
    const reader = new OptionReader(data);
    const nameLength = reader.u32();
    if (nameLength === undefined || nameLength > data.length - 6 || nameLength > P.MAX_STRING_BYTES) {
      return this.refuse(option, P.REP_ERR_INVALID, 'malformed NBD_OPT_INFO/GO: bad name length');
    }
    const name = reader.string(nameLength);
    const count = reader.u16();
    if (name === undefined || count === undefined || reader.remaining !== count * 2) {
      return this.refuse(option, P.REP_ERR_INVALID, 'malformed NBD_OPT_INFO/GO: bad name or information requests');
    }
    const requests = new Set<number>();
    for (let i = 0; i < count; i++) requests.add(reader.u16()!);
    const found = this.lookup(name);
    if (!found) {
      return this.refuse(option, P.REP_ERR_UNKNOWN, name === '' ? 'tidemark has no default export; name a volume' : `volume ${quote(name)} does not exist`);
    }
    const flags = this.exportFlags();
    if (option === P.Option.Go && !this.host.attach(name, found.size, flags)) {
      return this.refuse(option, P.REP_ERR_UNKNOWN, `volume ${quote(name)} went away`);
    }
    const exportInfo = Buffer.allocUnsafe(12);
    exportInfo.writeUInt16BE(P.INFO_EXPORT, 0);
    exportInfo.writeBigUInt64BE(BigInt(found.size), 2);
    exportInfo.writeUInt16BE(flags, 10);
    this.reply(option, P.REP_INFO, exportInfo);
    // Sent even unasked: clients that ignore it still get a clean EINVAL past the maximum.
    const sizes = Buffer.allocUnsafe(14);
    sizes.writeUInt16BE(P.INFO_BLOCK_SIZE, 0);
    sizes.writeUInt32BE(1, 2);
    sizes.writeUInt32BE(Math.max(512, found.blockSize), 6);
    sizes.writeUInt32BE(this.maxRequestBytes, 10);
    this.reply(option, P.REP_INFO, sizes);
    if (requests.has(P.INFO_NAME)) this.reply(option, P.REP_INFO, infoString(P.INFO_NAME, name));
    if (requests.has(P.INFO_DESCRIPTION)) {
      this.reply(option, P.REP_INFO, infoString(P.INFO_DESCRIPTION, `tidemark volume ${name} (${formatSize(found.size)})`));
    }
    this.reply(option, P.REP_ACK);
  }

  private metaContext(option: number, data: Buffer): void {
    const setting = option === P.Option.SetMetaContext;
    // A failed NBD_OPT_SET_META_CONTEXT still replaces the earlier selection.
    if (setting) {
      this.contexts = [];
      this.contextsExport = undefined;
    }
    if (!this.structured) return this.refuse(option, P.REP_ERR_INVALID, 'negotiate structured replies before metadata contexts');
    const reader = new OptionReader(data);
    const nameLength = reader.u32();
    const name = nameLength === undefined || nameLength > P.MAX_STRING_BYTES ? undefined : reader.string(nameLength);
    const count = reader.u32();
    if (name === undefined || count === undefined) return this.refuse(option, P.REP_ERR_INVALID, 'malformed metadata context request');
    const queries: string[] = [];
    for (let i = 0; i < count; i++) {
      const length = reader.u32();
      const query = length === undefined || length > P.MAX_STRING_BYTES ? undefined : reader.string(length);
      if (query === undefined) return this.refuse(option, P.REP_ERR_INVALID, 'malformed metadata context query');
      queries.push(query);
    }
    if (reader.remaining !== 0) return this.refuse(option, P.REP_ERR_INVALID, 'trailing bytes after metadata context queries');
    if (!this.lookup(name)) return this.refuse(option, P.REP_ERR_UNKNOWN, `volume ${quote(name)} does not exist`);
    const result = setting ? selectContexts(this.backend, name, queries) : listContexts(this.backend, name, queries);
    if (!result.ok) return this.refuse(option, P.REP_ERR_INVALID, result.reason);
    const replies = result.contexts.map((c, i) => ({ ...c, id: setting ? i + 1 : 0 }));
    for (const context of replies) {
      const text = Buffer.from(context.name, 'utf8');
      const body = Buffer.allocUnsafe(4 + text.length);
      body.writeUInt32BE(context.id, 0);
      text.copy(body, 4);
      this.reply(option, P.REP_META_CONTEXT, body);
    }
    if (setting) {
      this.contexts = replies;
      this.contextsExport = name;
    }
    this.reply(option, P.REP_ACK);
  }
}

/** A client-chosen name, cut short for messages and logs. */
export function quote(name: string): string {
  return JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}…` : name);
}

function infoString(type: number, text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8').subarray(0, P.MAX_STRING_BYTES);
  const b = Buffer.allocUnsafe(2 + bytes.length);
  b.writeUInt16BE(type, 0);
  bytes.copy(b, 2);
  return b;
}
