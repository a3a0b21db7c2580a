import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import winston from 'winston';
import { AdminClient } from '../../src/api/client.js';
import { CHANNEL_OPTIONS, adminServiceDefinition, unixAddress } from '../../src/api/proto.js';
import { AdminServer } from '../../src/api/server.js';
import { Engine } from '../../src/engine/index.js';
import type { Clock } from '../../src/util/time.js';

export interface LogEntry {
  level: string;
  message: string;
  [key: string]: unknown;
}

/** A real winston logger that keeps its JSON lines, so tests can check what was logged. */
export function captureLogger(): { logger: winston.Logger; entries: LogEntry[]; raw: string[] } {
  const entries: LogEntry[] = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) {
        if (!line.trim()) continue;
        raw.push(line);
        entries.push(JSON.parse(line) as LogEntry);
      }
      callback();
    },
  });
  const logger = winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream: sink })] });
  return { logger, entries, raw };
}

export interface Harness {
  dir: string;
  socket: string;
  engine: Engine;
  server: AdminServer;
  client: AdminClient;
  logs: LogEntry[];
  rawLogs: string[];
  close(): Promise<void>;
}

/** A real engine on a temp store, served on a real unix socket, with a real client. */
export async function startHarness(options: { segmentSize?: number; clock?: Clock } = {}): Promise<Harness> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-api-'));
  const { logger, entries, raw } = captureLogger();
  const engine = await Engine.open({ store: path.join(dir, 'store'), logger, upkeepIntervalMs: 0, ...options });
  const server = new AdminServer(engine, logger, { nodeId: 'node-a' });
  const socket = path.join(dir, 'admin.sock');
  await server.listen(socket);
  const client = new AdminClient(socket);
  return {
    dir,
    socket,
    engine,
    server,
    client,
    logs: entries,
    rawLogs: raw,
    async close() {
      client.close();
      await server.close();
      await engine.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

export interface RawResult {
  error?: grpc.ServiceError;
  response?: Record<string, unknown>;
}

/**
 * Calls a unary method with a hand-made request, bypassing AdminClient's own checks, to see
 * what the server does with input a careless or hostile client might send.
 */
export function rawUnary(socket: string, method: string, request: Record<string, unknown>): Promise<RawResult> {
  const definition = adminServiceDefinition()[method]!;
  const client = new grpc.Client(unixAddress(socket), grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  return new Promise((resolve) => {
    client.makeUnaryRequest(definition.path, definition.requestSerialize, definition.responseDeserialize, request, (error, response) => {
      client.close();
      resolve(error ? { error } : { response: response as Record<string, unknown> });
    });
  });
}

/** A raw client stream: sends the messages as given and reports how the call ended. */
export function rawWrite(socket: string, messages: Record<string, unknown>[]): Promise<RawResult> {
  const definition = adminServiceDefinition().WriteVolume!;
  const client = new grpc.Client(unixAddress(socket), grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  return new Promise((resolve) => {
    const call = client.makeClientStreamRequest(definition.path, definition.requestSerialize, definition.responseDeserialize, (error, response) => {
      client.close();
      resolve(error ? { error } : { response: response as Record<string, unknown> });
    });
    for (const message of messages) call.write(message);
    call.end();
  });
}

/** A raw server stream: collects every message, and the error that ended it if any. */
export function rawServerStream(socket: string, method: string, request: Record<string, unknown>): Promise<{ messages: Record<string, unknown>[]; error?: grpc.ServiceError }> {
  const definition = adminServiceDefinition()[method]!;
  const client = new grpc.Client(unixAddress(socket), grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  return new Promise((resolve) => {
    const messages: Record<string, unknown>[] = [];
    const call = client.makeServerStreamRequest(definition.path, definition.requestSerialize, definition.responseDeserialize, request);
    call.on('data', (m: Record<string, unknown>) => messages.push(m));
    call.on('error', (error: grpc.ServiceError) => {
      client.close();
      resolve({ messages, error });
    });
    call.on('end', () => {
      client.close();
      resolve({ messages });
    });
  });
}

export function tidemarkCode(error: grpc.ServiceError | undefined): unknown {
  return error?.metadata.get('tidemark-code')[0];
}

/** Deterministic bytes that differ at every position, so misplaced data shows. */
export function pattern(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Waits until `fn` stops throwing; for things that settle asynchronously (a killed child's socket). */
export async function eventually<T>(fn: () => Promise<T>, tries = 100, delayMs = 50): Promise<T> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      return await fn();
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
  throw last;
}
