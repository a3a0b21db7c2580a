import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { MarkerInfo, RestoreProgress, RestoreRequest, RestoreResult, RetentionPolicy, SnapshotInfo, VolumeInfo, VolumeOptions } from '../engine/index.js';
import { TidemarkError, invalidArgument } from '../util/errors.js';
import { fromServiceError } from './errors.js';
import { CHANNEL_OPTIONS, CHUNK_SIZE, adminServiceDefinition, unixAddress } from './proto.js';
import * as v from './validate.js';
import {
  decodeExtents,
  decodeMarker,
  decodeProgress,
  decodeResult,
  decodeSnapshot,
  decodeStatus,
  decodeVolume,
  decodeWriteResult,
  type DaemonStatus,
  type DiffResult,
  type WriteResult,
} from './wire.js';

export type { DaemonStatus, DiffResult, WriteResult };

export interface WriteOptions {
  /** Durable in the journal before the call returns. */
  flush?: boolean;
  /** Total bytes the source holds, when known: the daemon checks the whole range first. */
  length?: number;
}

export interface ReadOptions {
  offset?: number;
  /** Absent = up to the end of the volume. */
  length?: number;
}

/** Numbers the client sends are checked here: protobufjs would silently wrap or truncate them. */
function u64(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0) throw invalidArgument(`${what} must be a whole number of at least 0, not ${value}`);
  return value;
}

/** On the wire 0 means "the engine's default", so a 0 given on purpose must not be sent as one. */
function nonZero(value: number, what: string): number {
  if (value === 0) throw invalidArgument(`${what} must be above 0; leave it out for the default`);
  return u64(value, what);
}

function encodeRetention(retention: RetentionPolicy): v.Fields {
  const out: v.Fields = {};
  if (retention.maxBytes !== undefined) out.maxBytes = u64(retention.maxBytes, 'retention size');
  if (retention.maxAgeSeconds !== undefined) out.maxAgeSeconds = u64(Math.ceil(retention.maxAgeSeconds), 'retention age');
  return out;
}

/**
 * A typed, promise-based client of one daemon's admin API. Every failure comes back as a
 * TidemarkError carrying the engine's code; a daemon that cannot be reached is UNAVAILABLE.
 */
export class AdminClient {
  private readonly client: grpc.Client;
  readonly socketPath: string;

  constructor(socketPath: string) {
    this.socketPath = socketPath;
    this.client = new grpc.Client(unixAddress(socketPath), grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  }

  close(): void {
    this.client.close();
  }

  private method(name: string): grpc.MethodDefinition<unknown, unknown> {
    const method = adminServiceDefinition()[name];
    if (!method) throw new TidemarkError('INTERNAL', `admin.proto has no method ${name}`);
    return method as grpc.MethodDefinition<unknown, unknown>;
  }

  private unary(name: string, request: v.Fields): Promise<v.Fields> {
    const method = this.method(name);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, request, (err, response) => {
        if (err) reject(fromServiceError(err, this.socketPath));
        else resolve(v.fields(response, `${name} response`));
      });
    });
  }

  /** Iterates a server stream's messages; stopping early cancels the call. */
  private async *serverStream(name: string, request: v.Fields): AsyncGenerator<v.Fields> {
    const method = this.method(name);
    const call = this.client.makeServerStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, request);
    let finished = false;
    try {
      for await (const message of call as AsyncIterable<unknown>) yield v.fields(message, `${name} message`);
      finished = true;
    } catch (err) {
      finished = true;
      throw fromServiceError(err, this.socketPath);
    } finally {
      if (!finished) call.cancel();
    }
  }

  // ---- volumes ---------------------------------------------------------------------------

  async createVolume(name: string, options: VolumeOptions): Promise<VolumeInfo> {
    const request: v.Fields = { name, size: u64(options.size, 'size') };
    if (options.blockSize !== undefined) request.blockSize = nonZero(options.blockSize, 'block size');
    if (options.granularity !== undefined) request.granularity = nonZero(options.granularity, 'granularity');
    if (options.retention) request.retention = encodeRetention(options.retention);
    return decodeVolume(await this.unary('CreateVolume', request));
  }

  async deleteVolume(name: string, options: { force?: boolean } = {}): Promise<void> {
    await this.unary('DeleteVolume', { name, force: options.force === true });
  }

  async listVolumes(): Promise<VolumeInfo[]> {
    return v.list(await this.unary('ListVolumes', {}), 'volumes').map(decodeVolume);
  }

  async getVolume(name: string): Promise<VolumeInfo> {
    return decodeVolume(await this.unary('GetVolume', { name }));
  }

  /** Replaces the whole policy: a limit left out is no limit. */
  async setRetention(name: string, retention: RetentionPolicy): Promise<VolumeInfo> {
    return decodeVolume(await this.unary('SetRetention', { name, retention: encodeRetention(retention) }));
  }

  /** Forgets that an in-place restore was cut short, leaving the data as it is. */
  async clearInterruptedRestore(name: string): Promise<VolumeInfo> {
    return decodeVolume(await this.unary('ClearInterruptedRestore', { name }));
  }

  // ---- data ------------------------------------------------------------------------------

  /**
   * Streams `source` into the volume from `offset`, in chunks of at most 1 MiB, keeping to
   * the stream's flow control so memory stays bounded for sources of any size.
   */
  writeVolume(volume: string, offset: number, source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options: WriteOptions = {}): Promise<WriteResult> {
    const header: v.Fields = { volume, offset: u64(offset, 'offset'), flush: options.flush === true };
    if (options.length !== undefined) header.length = u64(options.length, 'length');
    const method = this.method('WriteVolume');
    return new Promise<WriteResult>((resolve, reject) => {
      let settled = false;
      let settle!: () => void;
      const settledSignal = new Promise<void>((r) => (settle = r));
      const finish = (err: unknown, result?: WriteResult) => {
        if (settled) return;
        settled = true;
        settle();
        if (err !== undefined) reject(fromServiceError(err, this.socketPath));
        else resolve(result!);
      };
      const call = this.client.makeClientStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, (err, response) => {
        if (err) return finish(err);
        try {
          finish(undefined, decodeWriteResult(response));
        } catch (decodeError) {
          finish(decodeError);
        }
      });
      const send = async (message: v.Fields) => {
        if (!call.write(message)) await Promise.race([once(call, 'drain'), settledSignal]);
      };
      void (async () => {
        await send(header);
        for await (const chunk of source) {
          for (let at = 0; at < chunk.length && !settled; at += CHUNK_SIZE) {
            await send({ data: chunk.subarray(at, at + CHUNK_SIZE) });
          }
          if (settled) return;
        }
        call.end();
      })().catch((err: unknown) => {
        // The source failed (a file that cannot be read): the daemon must not take a short
        // write for a whole one, so the call is cancelled rather than ended.
        call.cancel();
        if (!settled) {
          settled = true;
          settle();
          reject(err instanceof TidemarkError ? err : new TidemarkError('INVALID_ARGUMENT', `reading the data to write: ${err instanceof Error ? err.message : String(err)}`));
        }
      });
    });
  }

  /** The volume's bytes in order, as chunks of at most 1 MiB. */
  async *readVolume(volume: string, options: ReadOptions = {}): AsyncGenerator<Buffer> {
    const request: v.Fields = { volume, offset: u64(options.offset ?? 0, 'offset') };
    if (options.length !== undefined) request.length = u64(options.length, 'length');
    let expected = options.offset ?? 0;
    for await (const message of this.serverStream('ReadVolume', request)) {
      const offset = v.uint64(message, 'offset');
      if (offset !== expected) throw new TidemarkError('INTERNAL', `the daemon sent data for offset ${offset} where ${expected} was due`);
      const data = v.bytes(message, 'data');
      expected += data.length;
      yield data;
    }
  }

  /** Reads a range into one buffer; for ranges that fit in memory. */
  async read(volume: string, offset: number, length: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of this.readVolume(volume, { offset, length })) chunks.push(chunk);
    return Buffer.concat(chunks);
  }

  /** Writes one buffer and, by default, makes it durable. */
  write(volume: string, offset: number, data: Uint8Array, options: { flush?: boolean } = {}): Promise<WriteResult> {
    return this.writeVolume(volume, offset, [data], { flush: options.flush ?? true, length: data.length });
  }

  async flushVolume(volume: string): Promise<number> {
    return v.uint64(await this.unary('FlushVolume', { volume }), 'sequence');
  }

  // ---- snapshots and markers -------------------------------------------------------------

  async createSnapshot(volume: string, name: string): Promise<SnapshotInfo> {
    return decodeSnapshot(await this.unary('CreateSnapshot', { volume, name }));
  }

  async listSnapshots(volume: string, options: { includeInternal?: boolean } = {}): Promise<SnapshotInfo[]> {
    return v.list(await this.unary('ListSnapshots', { volume, includeInternal: options.includeInternal === true }), 'snapshots').map(decodeSnapshot);
  }

  async deleteSnapshot(volume: string, name: string): Promise<void> {
    await this.unary('DeleteSnapshot', { volume, name });
  }

  async createMarker(name: string, volumes: string[]): Promise<MarkerInfo[]> {
    return v.list(await this.unary('CreateMarker', { name, volumes }), 'markers').map(decodeMarker);
  }

  async listMarkers(volume: string): Promise<MarkerInfo[]> {
    return v.list(await this.unary('ListMarkers', { volume }), 'markers').map(decodeMarker);
  }

  // ---- restores and diffs ----------------------------------------------------------------

  async restore(request: RestoreRequest, onProgress?: (progress: RestoreProgress) => void): Promise<RestoreResult> {
    const message: v.Fields = { volume: request.volume, force: request.force === true, target: request.target ?? '' };
    const source = request.source;
    if ('snapshot' in source) message.snapshot = source.snapshot;
    else if ('marker' in source) message.marker = source.marker;
    else if ('time' in source) {
      if (Number.isNaN(source.time.getTime())) throw invalidArgument('the restore time is not a valid date');
      message.time = source.time.toISOString();
    } else message.sequence = u64(source.sequence, 'sequence');
    if (request.ranges) {
      message.ranges = request.ranges.map((r, i) => ({ offset: u64(r.offset, `ranges[${i}].offset`), length: u64(r.length, `ranges[${i}].length`) }));
    }
    let result: RestoreResult | undefined;
    for await (const event of this.serverStream('Restore', message)) {
      if (event.event === 'progress') onProgress?.(decodeProgress(event.progress));
      else if (event.event === 'result') result = decodeResult(event.result);
    }
    if (!result) throw new TidemarkError('INTERNAL', 'the daemon ended the restore without a result');
    return result;
  }

  async diff(volume: string, base: string, target?: string): Promise<DiffResult> {
    const response = await this.unary('Diff', { volume, base, target: target ?? '' });
    return { extents: decodeExtents(response, 'extents'), changedBytes: v.uint64(response, 'changedBytes') };
  }

  async status(): Promise<DaemonStatus> {
    return decodeStatus(await this.unary('GetStatus', {}));
  }
}
