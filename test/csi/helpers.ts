import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Engine } from '../../src/engine/index.js';
import { readMounts } from '../../src/host/index.js';
import { NbdServer } from '../../src/nbd/index.js';
import { CsiServer, csiClientConstructor, type CsiServerOptions, type CsiServiceName } from '../../src/csi/index.js';
import { silentLogger, type Logger } from '../../src/util/log.js';

export const NODE = 'node-a';
export const MiB = 1024 * 1024;

type Unary = (request: unknown, callback: (err: grpc.ServiceError | null, response: unknown) => void) => void;

/** A csi.v1 client for one service: unary calls as promises, streams collected. */
export class CsiClient {
  private readonly client: grpc.Client;

  constructor(service: CsiServiceName, socket: string) {
    const Client = csiClientConstructor(service);
    this.client = new Client(`unix:${socket}`, grpc.credentials.createInsecure());
  }

  call<T = Record<string, unknown>>(method: string, request: object = {}): Promise<T> {
    const fn = (this.client as unknown as Record<string, Unary>)[method];
    if (!fn) throw new Error(`no method ${method}`);
    return new Promise((resolve, reject) => fn.call(this.client, request, (err, response) => (err ? reject(err) : resolve(response as T))));
  }

  /** The gRPC status code a call fails with; fails the test when the call succeeds. */
  async code(method: string, request: object = {}): Promise<grpc.status> {
    try {
      await this.call(method, request);
    } catch (err) {
      return (err as grpc.ServiceError).code;
    }
    throw new Error(`${method} succeeded but was expected to fail`);
  }

  stream<T = Record<string, unknown>>(method: string, request: object = {}): Promise<T[]> {
    const fn = (this.client as unknown as Record<string, (request: unknown) => grpc.ClientReadableStream<T>>)[method];
    if (!fn) throw new Error(`no method ${method}`);
    const call = fn.call(this.client, request);
    const messages: T[] = [];
    return new Promise((resolve, reject) => {
      call.on('data', (m: T) => messages.push(m));
      call.on('error', reject);
      call.on('end', () => resolve(messages));
    });
  }

  async streamCode(method: string, request: object = {}): Promise<grpc.status> {
    try {
      await this.stream(method, request);
    } catch (err) {
      return (err as grpc.ServiceError).code;
    }
    throw new Error(`${method} succeeded but was expected to fail`);
  }

  close(): void {
    this.client.close();
  }
}

export interface Harness {
  dir: string;
  store: string;
  socket: string;
  engine: Engine;
  server: CsiServer;
  /** The NBD server NodeStageVolume attaches through. */
  nbd: NbdServer;
  nbdSocket: string;
  identity: CsiClient;
  controller: CsiClient;
  group: CsiClient;
  metadata: CsiClient;
  node: CsiClient;
  stop(): Promise<void>;
}

/**
 * A real engine on a temporary store, a real NBD server and a real CsiServer on unix
 * sockets beside it: what `tidemark serve` runs, without the admin API.
 */
export async function startHarness(options: Partial<CsiServerOptions> & { logger?: Logger } = {}): Promise<Harness> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-csi-'));
  const store = path.join(dir, 'store');
  const socket = path.join(dir, 'csi.sock');
  const logger = options.logger ?? silentLogger();
  const engine = await Engine.open({ store, logger, upkeepIntervalMs: 0 });
  const nbdSocket = path.join(dir, 'nbd.sock');
  const nbd = new NbdServer(engine, logger, { closeGraceMs: 1000 });
  await nbd.listenUnix(nbdSocket);
  const server = new CsiServer(engine, logger, {
    nodeId: NODE,
    endpoint: `unix://${socket}`,
    ...options,
    node: { nbdSocket, stateDir: path.join(dir, 'node'), ...options.node },
  });
  await server.start();
  const clients = {
    identity: new CsiClient('Identity', socket),
    controller: new CsiClient('Controller', socket),
    group: new CsiClient('GroupController', socket),
    metadata: new CsiClient('SnapshotMetadata', socket),
    node: new CsiClient('Node', socket),
  };
  return {
    dir,
    store,
    socket,
    engine,
    server,
    nbd,
    nbdSocket,
    ...clients,
    async stop() {
      for (const client of Object.values(clients)) client.close();
      await server.stop(1000);
      await releaseHostState(dir);
      await nbd.close();
      await engine.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Takes down whatever a failed test left attached under `dir`: mounts (deepest first, lazily),
 * loop devices reading files there, FUSE mounts. Without it one failure cascades into every
 * later test of the run.
 */
export async function releaseHostState(dir: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const quiet = (command: string, args: string[]) => new Promise<void>((resolve) => spawn(command, args, { stdio: 'ignore' }).once('close', () => resolve()).once('error', () => resolve()));
  const mounts = (await readMounts()).filter((m) => m.mountPoint.startsWith(`${dir}/`));
  for (const m of mounts.filter((m) => m.fsType !== 'fuse').reverse()) await quiet('umount', ['-l', m.mountPoint]);
  for (const name of await fs.readdir('/sys/block')) {
    const backing = await fs.readFile(`/sys/block/${name}/loop/backing_file`, 'utf8').catch(() => '');
    if (backing.startsWith(`${dir}/`)) await quiet('losetup', ['-d', `/dev/${name}`]);
  }
  for (const m of mounts.filter((m) => m.fsType === 'fuse')) await quiet('fusermount3', ['-u', '-z', m.mountPoint]);
}

export const mountCapability = (fsType = '') => ({ mount: { fsType, mountFlags: [] }, accessMode: { mode: 'SINGLE_NODE_WRITER' } });
export const blockCapability = () => ({ block: {}, accessMode: { mode: 'SINGLE_NODE_WRITER' } });

export interface VolumeMessage {
  capacityBytes: string;
  volumeId: string;
  volumeContext: Record<string, string>;
  contentSource: { snapshot?: { snapshotId: string } | null; volume?: { volumeId: string } | null; type?: string } | null;
  accessibleTopology: { segments: Record<string, string> }[];
}

export interface SnapshotMessage {
  sizeBytes: string;
  snapshotId: string;
  sourceVolumeId: string;
  creationTime: { seconds: string; nanos: number };
  readyToUse: boolean;
  groupSnapshotId: string;
}

export async function createVolume(h: Harness, name: string, extra: object = {}): Promise<VolumeMessage> {
  const response = await h.controller.call<{ volume: VolumeMessage }>('CreateVolume', {
    name,
    capacityRange: { requiredBytes: String(4 * MiB) },
    volumeCapabilities: [mountCapability()],
    ...extra,
  });
  return response.volume;
}

export async function createSnapshot(h: Harness, name: string, sourceVolumeId: string): Promise<SnapshotMessage> {
  const response = await h.controller.call<{ snapshot: SnapshotMessage }>('CreateSnapshot', { name, sourceVolumeId });
  return response.snapshot;
}

/** Deterministic bytes, different for every (seed, offset). */
export function pattern(length: number, seed: number): Buffer {
  const buffer = Buffer.alloc(length);
  for (let i = 0; i < length; i++) buffer[i] = (seed * 31 + i * 7 + (i >> 9)) & 0xff;
  return buffer;
}

export const engineName = (volumeId: string) => volumeId.split(':')[1]!;

/**
 * Leaves an in-place rewind of `volume` (an engine name, at least 32 MiB) cut short: it fails
 * after its first 16 MiB batch, as a crash would leave it. Returns the marker's sequence.
 */
export async function interruptRestore(h: Harness, volume: string): Promise<number> {
  const [marker] = await h.engine.createMarker('before', [volume]);
  for (let at = 0; at < 24 * MiB; at += 4 * MiB) await h.engine.write(volume, at, pattern(4 * MiB, at / MiB));
  await h.engine
    .restore({ volume, source: { marker: 'before' } }, (progress) => {
      if (progress.bytesRestored > 0) throw new Error('cut short');
    })
    .catch(() => undefined);
  if (!h.engine.volumeInfo(volume).restoreInterrupted) throw new Error(`the restore of ${volume} was not cut short`);
  return marker!.sequence;
}
