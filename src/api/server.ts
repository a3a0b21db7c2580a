import { once } from 'node:events';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Engine, Extent, RestoreRequest, RestoreSource, RetentionPolicy } from '../engine/index.js';
import { TidemarkError, classifyError, invalidArgument, outOfRange } from '../util/errors.js';
import { MAX_SOCKET_PATH, listenPrivately, logCall, serverStreamCall, shutDown, unaryCall, type CallIds, type CallStyle, type SocketWording } from '../util/grpc.js';
import type { Logger } from '../util/log.js';
import { packageVersion } from '../util/package.js';
import { parseRfc3339 } from '../util/time.js';
import { toServiceError } from './errors.js';
import type { AdminHandlers } from './generated/tidemark/v1/Admin.js';
import type { WriteVolumeResponse } from './generated/tidemark/v1/WriteVolumeResponse.js';
import { CHANNEL_OPTIONS, CHUNK_SIZE, adminServiceDefinition } from './proto.js';
import * as v from './validate.js';
import { encodeMarker, encodeResult, encodeSnapshot, encodeVolume } from './wire.js';

export interface AdminServerOptions {
  /** Reported by GetStatus; the Kubernetes node this daemon serves. */
  nodeId?: string;
}

/**
 * A handler reads its request through the checks of validate.ts (a decoded message is only as
 * typed as its sender made it) and answers with a message of admin.proto's generated types;
 * `satisfies AdminHandlers` below checks each answer against its method's response.
 */
type UnaryHandler<Res> = (request: v.Fields, ids: CallIds) => Promise<Res> | Res;

/** Calls that change nothing are logged at debug level, so that polling does not flood the log. */
const READ_ONLY = new Set(['ListVolumes', 'GetVolume', 'ReadVolume', 'ListSnapshots', 'ListMarkers', 'Diff', 'GetStatus']);

/** Client-stream writes kept in flight at once, so the engine can batch them. */
const WRITES_IN_FLIGHT = 8;

/** How the admin socket is named in errors about it. */
const SOCKET_WORDING: SocketWording = { what: 'admin socket', setting: '--admin-socket', holder: 'another tidemark daemon' };

/**
 * The admin gRPC API (`tidemark.v1.Admin`) on a unix socket. Every request field is checked
 * here, at the edge, before the engine sees it; engine errors go back as gRPC statuses with
 * the engine's own code in the `tidemark-code` trailer.
 */
export class AdminServer {
  private server: grpc.Server | undefined;
  private socketPath: string | undefined;
  private readonly startedAt = new Date();
  /**
   * How admin calls are logged and answered: a failure is logged with the engine's code, and
   * answered with its gRPC status and the engine's code in the `tidemark-code` trailer.
   */
  private readonly style: CallStyle;

  constructor(
    private readonly engine: Engine,
    private readonly logger: Logger,
    private readonly options: AdminServerOptions = {},
  ) {
    // Set here, not as a field initializer, because it needs the logger the constructor takes.
    this.style = {
      logger,
      kind: 'admin',
      failure: (err, rpc) => {
        const error = classifyError(err, rpc);
        return { code: error.code, message: error.message, internal: error.code === 'INTERNAL', status: toServiceError(error) };
      },
    };
  }

  /** The socket the server listens on, once listening. */
  get address(): string | undefined {
    return this.socketPath;
  }

  async listen(socketPath: string): Promise<void> {
    if (this.server) throw new TidemarkError('FAILED_PRECONDITION', `the admin server already listens on ${this.socketPath}`);
    const resolved = path.resolve(socketPath);
    if (Buffer.byteLength(resolved) > MAX_SOCKET_PATH) {
      throw invalidArgument(`admin socket path ${resolved} is longer than the ${MAX_SOCKET_PATH} bytes a unix socket allows; choose a shorter --admin-socket`);
    }
    const server = new grpc.Server(CHANNEL_OPTIONS);
    server.addService(adminServiceDefinition(), this.handlers());
    // The API reads and rewrites whole volumes: only the daemon's own user may use it.
    await listenPrivately(server, resolved, SOCKET_WORDING);
    this.server = server;
    this.socketPath = resolved;
    this.logger.info('admin API listening', { socket: resolved });
  }

  /** Stops taking calls, lets running ones finish for a few seconds, then cuts them. */
  async close(graceMs = 5000): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await shutDown(server, graceMs, this.socketPath);
    this.logger.info('admin API stopped', { socket: this.socketPath });
  }

  // ---- plumbing --------------------------------------------------------------------------

  private unary<Res>(rpc: string, handler: UnaryHandler<Res>): grpc.handleUnaryCall<unknown, Res> {
    return unaryCall(this.style, rpc, (request, ids) => handler(v.fields(request, 'request'), ids), READ_ONLY.has(rpc));
  }

  private serverStream<Res>(rpc: string, handler: (request: v.Fields, ids: CallIds, call: grpc.ServerWritableStream<unknown, Res>) => Promise<void>) {
    return serverStreamCall<unknown, Res>(this.style, rpc, (request, ids, call) => handler(v.fields(request, 'request'), ids, call), READ_ONLY.has(rpc));
  }

  private handlers(): grpc.UntypedServiceImplementation {
    const engine = this.engine;
    return {
      CreateVolume: this.unary('CreateVolume', async (req, ids) => {
        const name = v.requiredString(req, 'name');
        ids.volume = name;
        const blockSize = v.uint64(req, 'blockSize');
        const granularity = v.uint64(req, 'granularity');
        const retention = decodeRetentionRequest(v.optionalMessage(req, 'retention'));
        const info = await engine.createVolume(name, {
          size: v.uint64(req, 'size'),
          ...(blockSize > 0 ? { blockSize } : {}),
          ...(granularity > 0 ? { granularity } : {}),
          retention,
        });
        return encodeVolume(info);
      }),

      DeleteVolume: this.unary('DeleteVolume', async (req, ids) => {
        const name = v.requiredString(req, 'name');
        const force = v.bool(req, 'force');
        Object.assign(ids, { volume: name, force });
        await engine.deleteVolume(name, { force });
        return {};
      }),

      ListVolumes: this.unary('ListVolumes', () => ({ volumes: engine.listVolumes().map(encodeVolume) })),

      GetVolume: this.unary('GetVolume', (req, ids) => {
        const name = v.requiredString(req, 'name');
        ids.volume = name;
        return encodeVolume(engine.volumeInfo(name));
      }),

      SetRetention: this.unary('SetRetention', async (req, ids) => {
        const name = v.requiredString(req, 'name');
        ids.volume = name;
        const retention = decodeRetentionRequest(v.optionalMessage(req, 'retention'));
        Object.assign(ids, { maxBytes: retention.maxBytes, maxAgeSeconds: retention.maxAgeSeconds });
        return encodeVolume(await engine.setRetention(name, retention));
      }),

      ClearInterruptedRestore: this.unary('ClearInterruptedRestore', async (req, ids) => {
        const name = v.requiredString(req, 'name');
        ids.volume = name;
        return encodeVolume(await engine.clearInterruptedRestore(name));
      }),

      WriteVolume: (call: grpc.ServerReadableStream<unknown, WriteVolumeResponse>, callback: grpc.sendUnaryData<WriteVolumeResponse>) => {
        const started = Date.now();
        const ids: CallIds = {};
        void this.writeVolume(call, ids).then(
          (response) => {
            logCall(this.style, 'WriteVolume', ids, started, false);
            callback(null, response);
          },
          (err: unknown) => {
            const failure = this.style.failure(err, 'WriteVolume');
            logCall(this.style, 'WriteVolume', { ...ids, cancelled: call.cancelled || undefined }, started, false, failure);
            callback(failure.status);
          },
        );
      },

      ReadVolume: this.serverStream('ReadVolume', async (req, ids, call) => {
        const name = v.requiredString(req, 'volume');
        ids.volume = name;
        const size = engine.volumeInfo(name).size;
        const offset = v.uint64(req, 'offset');
        const length = v.optionalUint64(req, 'length') ?? Math.max(0, size - offset);
        Object.assign(ids, { offset, length });
        if (offset + length > size) {
          throw outOfRange(`read: bytes ${offset}..${offset + length} lie outside volume "${name}" of ${size} bytes`, { volume: name });
        }
        for (let at = offset; at < offset + length && !call.cancelled; at += CHUNK_SIZE) {
          const data = await engine.read(name, at, Math.min(CHUNK_SIZE, offset + length - at));
          if (!call.write({ offset: at, data })) await drained(call);
        }
      }),

      FlushVolume: this.unary('FlushVolume', async (req, ids) => {
        const name = v.requiredString(req, 'volume');
        ids.volume = name;
        return { sequence: await engine.flush(name) };
      }),

      CreateSnapshot: this.unary('CreateSnapshot', async (req, ids) => {
        const volume = v.requiredString(req, 'volume');
        const name = v.requiredString(req, 'name');
        Object.assign(ids, { volume, snapshot: name });
        return encodeSnapshot(await engine.createSnapshot(volume, name));
      }),

      ListSnapshots: this.unary('ListSnapshots', (req, ids) => {
        const volume = v.requiredString(req, 'volume');
        ids.volume = volume;
        return { snapshots: engine.listSnapshots(volume, { includeInternal: v.bool(req, 'includeInternal') }).map(encodeSnapshot) };
      }),

      DeleteSnapshot: this.unary('DeleteSnapshot', async (req, ids) => {
        const volume = v.requiredString(req, 'volume');
        const name = v.requiredString(req, 'name');
        Object.assign(ids, { volume, snapshot: name });
        await engine.deleteSnapshot(volume, name);
        return {};
      }),

      CreateMarker: this.unary('CreateMarker', async (req, ids) => {
        const name = v.requiredString(req, 'name');
        const volumes = v.stringList(req, 'volumes');
        Object.assign(ids, { marker: name, volumes });
        if (volumes.length === 0) throw invalidArgument('a marker needs at least one volume');
        return { markers: (await engine.createMarker(name, volumes)).map(encodeMarker) };
      }),

      ListMarkers: this.unary('ListMarkers', (req, ids) => {
        const volume = v.requiredString(req, 'volume');
        ids.volume = volume;
        return { markers: engine.listMarkers(volume).map(encodeMarker) };
      }),

      Restore: this.serverStream('Restore', async (req, ids, call) => {
        const request = decodeRestoreRequest(req);
        Object.assign(ids, {
          volume: request.volume,
          ...describeSource(request.source),
          target: request.target,
          ranges: request.ranges?.length,
          force: request.force,
        });
        const result = await engine.restore(request, (progress) => {
          if (!call.cancelled) call.write({ progress });
        });
        Object.assign(ids, { method: result.method, pointSequence: result.pointSequence, bytesRestored: result.bytesRestored });
        if (!call.cancelled) call.write({ result: encodeResult(result) });
      }),

      Diff: this.unary('Diff', (req, ids) => {
        const volume = v.requiredString(req, 'volume');
        const base = v.requiredString(req, 'base');
        const target = v.optionalString(req, 'target');
        Object.assign(ids, { volume, snapshot: base, target });
        const extents = engine.diff(volume, base, target);
        return { extents, changedBytes: extents.reduce((sum, e) => sum + e.length, 0) };
      }),

      GetStatus: this.unary('GetStatus', () => ({
        store: engine.store,
        version: packageVersion(),
        volumeCount: engine.listVolumes().length,
        nodeId: this.options.nodeId ?? '',
        pid: process.pid,
        startedAt: this.startedAt.toISOString(),
      })),
    } satisfies AdminHandlers;
  }

  /**
   * WriteVolume: the first message names the volume and offset, and every message's data
   * follows the previous one's. A few writes stay in flight so the engine can batch them;
   * the engine journals them in the order they were issued.
   */
  private async writeVolume(call: grpc.ServerReadableStream<unknown, WriteVolumeResponse>, ids: CallIds): Promise<WriteVolumeResponse> {
    let volume: string | undefined;
    let offset = 0;
    let announced: number | undefined;
    let flush = false;
    let written = 0;
    let sequence = 0;
    let failure: unknown;
    const inFlight = new Set<Promise<void>>();

    for await (const message of call as AsyncIterable<unknown>) {
      const req = v.fields(message, 'write message');
      if (volume === undefined) {
        volume = v.requiredString(req, 'volume');
        ids.volume = volume;
        offset = v.uint64(req, 'offset');
        announced = v.optionalUint64(req, 'length');
        flush = v.bool(req, 'flush');
        Object.assign(ids, { offset, length: announced, flush });
        const size = this.engine.volumeInfo(volume).size;
        const end = offset + (announced ?? 0);
        if (offset > size || end > size) {
          throw outOfRange(`write: bytes ${offset}..${end} lie outside volume "${volume}" of ${size} bytes`, { volume });
        }
      } else {
        const named = v.optionalString(req, 'volume');
        if (named !== undefined && named !== volume) throw invalidArgument(`a write stream addresses one volume; "${named}" follows "${volume}"`);
      }
      const data = v.bytes(req, 'data');
      if (data.length === 0) continue;
      if (announced !== undefined && written + data.length > announced) {
        throw invalidArgument(`the write stream carries more than the ${announced} bytes it announced`, { volume });
      }
      const write = this.engine.write(volume, offset + written, data).then(
        (seq) => {
          sequence = Math.max(sequence, seq);
        },
        (err: unknown) => {
          failure ??= err;
        },
      );
      written += data.length;
      const tracked = write.finally(() => inFlight.delete(tracked));
      inFlight.add(tracked);
      if (inFlight.size >= WRITES_IN_FLIGHT) await Promise.race(inFlight);
      if (failure !== undefined) throw failure;
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure;
    if (volume === undefined) throw invalidArgument('a write stream must start with a message naming the volume');
    ids.bytesWritten = written;
    if (announced !== undefined && written !== announced) {
      throw invalidArgument(`the write stream ended after ${written} of the ${announced} bytes it announced; those ${written} bytes were written`, { volume });
    }
    if (flush) sequence = Math.max(sequence, await this.engine.flush(volume));
    return { bytesWritten: written, sequence, flushed: flush };
  }
}

async function drained<Res>(call: grpc.ServerWritableStream<unknown, Res>): Promise<void> {
  const abort = new AbortController();
  const cancelled = once(call, 'cancelled', { signal: abort.signal }).catch(() => undefined);
  await Promise.race([once(call, 'drain', { signal: abort.signal }).catch(() => undefined), cancelled]);
  abort.abort();
}

function decodeRetentionRequest(message: v.Fields | undefined): RetentionPolicy {
  if (!message) return {};
  const retention: RetentionPolicy = {};
  const maxBytes = v.optionalUint64(message, 'maxBytes', 'retention.max_bytes');
  const maxAgeSeconds = v.optionalUint64(message, 'maxAgeSeconds', 'retention.max_age_seconds');
  if (maxBytes !== undefined) retention.maxBytes = maxBytes;
  if (maxAgeSeconds !== undefined) retention.maxAgeSeconds = maxAgeSeconds;
  return retention;
}

function decodeRestoreRequest(req: v.Fields): RestoreRequest {
  const volume = v.requiredString(req, 'volume');
  let source: RestoreSource;
  switch (req.source) {
    case 'snapshot':
      source = { snapshot: v.requiredString(req, 'snapshot') };
      break;
    case 'marker':
      source = { marker: v.requiredString(req, 'marker') };
      break;
    case 'time':
      source = { time: parseRfc3339(v.requiredString(req, 'time')) };
      break;
    case 'sequence':
      source = { sequence: v.uint64(req, 'sequence') };
      break;
    default:
      throw invalidArgument('a restore needs exactly one source: a snapshot, a marker, a time or a sequence');
  }
  const ranges: Extent[] = v.list(req, 'ranges').map((item, i) => {
    const range = v.fields(item, `ranges[${i}]`);
    return { offset: v.uint64(range, 'offset', `ranges[${i}].offset`), length: v.uint64(range, 'length', `ranges[${i}].length`) };
  });
  const target = v.optionalString(req, 'target');
  const request: RestoreRequest = { volume, source, force: v.bool(req, 'force') };
  if (ranges.length > 0) request.ranges = ranges;
  if (target !== undefined) request.target = target;
  return request;
}

function describeSource(source: RestoreSource): CallIds {
  if ('snapshot' in source) return { snapshot: source.snapshot };
  if ('marker' in source) return { marker: source.marker };
  if ('time' in source) return { time: source.time.toISOString() };
  return { sequence: source.sequence };
}
