import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Engine } from '../engine/index.js';
import { TidemarkError, invalidArgument } from '../util/errors.js';
import { MAX_SOCKET_PATH, listenPrivately, shutDown, type SocketWording } from '../util/grpc.js';
import type { Logger } from '../util/log.js';
import type { CsiContext } from './context.js';
import { controllerService } from './controller.js';
import { groupControllerService } from './groupcontroller.js';
import { Handles, isGroupMember, isTemporary } from './handles.js';
import { identityService } from './identity.js';
import { InFlight } from './inflight.js';
import { nodeAttacher, nodeService, type NodeServiceOptions } from './node.js';
import type { Attacher } from '../host/index.js';
import { csiServiceDefinition, type CsiServiceName } from './proto.js';
import { CsiRecords } from './records.js';
import { snapshotMetadataService } from './snapshotmetadata.js';

export interface CsiServerOptions {
  /** The Kubernetes node this daemon serves; it is part of every handle. */
  nodeId: string;
  /** `unix:///absolute/path.sock`, the form CSI_ENDPOINT takes. */
  endpoint: string;
  /** Where the CSI layer keeps its records; STORE/csi by default. */
  stateDir?: string;
  /** Extra readiness the daemon knows of (the NBD server being up, say); Probe reports it. */
  ready?: () => boolean;
  /** The Node service's host side; by default the store's nbd.sock and STORE/csi/node. */
  node?: Partial<NodeServiceOptions>;
}

/** How the CSI socket is named in errors about it. */
const SOCKET_WORDING: SocketWording = { what: 'CSI socket', setting: 'CSI endpoint', holder: 'something already' };

/** The socket path of a `unix://` endpoint, checked. */
/** Where the node service keeps its attachment and staging records. */
export function nodeStateDir(store: string): string {
  return path.join(store, 'csi', 'node');
}

export function socketPathOf(endpoint: string): string {
  const match = /^unix:\/\/(\/.*)$/.exec(endpoint);
  if (!match) throw invalidArgument(`CSI endpoint "${endpoint}" must be unix:// and an absolute path, e.g. unix:///csi/csi.sock`);
  const socket = path.normalize(match[1]!);
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
    throw invalidArgument(`CSI socket path ${socket} is longer than the ${MAX_SOCKET_PATH} bytes a unix socket allows`);
  }
  return socket;
}

/**
 * The CSI services (Identity, Controller, GroupController, SnapshotMetadata and Node) on one
 * unix socket, over one engine. Every call is logged with the ids it touched and never with
 * secrets; calls on a volume, snapshot or group snapshot that already has one in flight are
 * turned away with ABORTED.
 */
export class CsiServer {
  private server: grpc.Server | undefined;
  private attacher: Attacher | undefined;
  private started = false;
  private stopping = false;
  readonly handles: Handles;
  readonly socketPath: string;

  constructor(
    private readonly engine: Engine,
    private readonly logger: Logger,
    private readonly options: CsiServerOptions,
  ) {
    this.handles = new Handles(options.nodeId);
    this.socketPath = socketPathOf(options.endpoint);
  }

  get ready(): boolean {
    return this.started && !this.stopping && (this.options.ready?.() ?? true);
  }

  async start(): Promise<void> {
    if (this.server) throw new TidemarkError('FAILED_PRECONDITION', `the CSI server already listens on ${this.socketPath}`);
    const records = await CsiRecords.open(this.options.stateDir ?? path.join(this.engine.store, 'csi'), this.logger);
    const ctx: CsiContext = {
      engine: this.engine,
      logger: this.logger,
      handles: this.handles,
      records,
      inflight: new InFlight(),
      ready: () => this.ready,
    };
    await this.recover(ctx);
    const nodeOptions: NodeServiceOptions = { nbdSocket: path.join(this.engine.store, 'nbd.sock'), stateDir: nodeStateDir(this.engine.store), ...this.options.node };
    const attacher = nodeAttacher(ctx, nodeOptions);
    // Before the first call: devices the kernel kept through a restart get their connection
    // back, so that no volume is reported healthy while its I/O waits for this daemon.
    await attacher.reattach();
    this.attacher = attacher;
    // A kernel device grows while mounted; an nbdfuse one only when staged again.
    const expansion = (await attacher.mode().catch(() => 'fuse' as const)) === 'kernel' ? 'ONLINE' : 'OFFLINE';

    const server = new grpc.Server();
    const services: [CsiServiceName, grpc.UntypedServiceImplementation][] = [
      ['Identity', identityService(ctx, expansion)],
      ['Controller', controllerService(ctx)],
      ['GroupController', groupControllerService(ctx)],
      ['SnapshotMetadata', snapshotMetadataService(ctx)],
      ['Node', nodeService(ctx, nodeOptions, attacher)],
    ];
    for (const [name, implementation] of services) server.addService(csiServiceDefinition(name), implementation);
    // Only the kubelet (root) and the daemon's own user call CSI; its calls attach, format and
    // delete volumes.
    await listenPrivately(server, this.socketPath, SOCKET_WORDING);
    this.server = server;
    this.started = true;
    this.logger.info('CSI services listening', { endpoint: this.options.endpoint, node: this.handles.nodeId });
  }

  /**
   * Clears what an interrupted call left behind: temporary clone snapshots, members of group
   * snapshots whose cut never completed, records of volumes that are gone.
   */
  private async recover(ctx: CsiContext): Promise<void> {
    for (const volume of this.engine.listVolumes()) {
      for (const snapshot of this.engine.listSnapshots(volume.name)) {
        const leftover = isTemporary(snapshot.name) || (isGroupMember(snapshot.name) && !ctx.records.group(snapshot.name));
        if (!leftover) continue;
        this.logger.warn('removing a snapshot left by an interrupted CSI call', { volume: volume.name, snapshot: snapshot.name });
        await this.engine.deleteSnapshot(volume.name, snapshot.name).catch((err: unknown) => {
          this.logger.warn('could not remove a leftover snapshot', { volume: volume.name, snapshot: snapshot.name, error: String(err) });
        });
      }
    }
    for (const name of ctx.records.volumeNames()) {
      if (!this.engine.has(name)) await ctx.records.deleteVolume(name);
    }
  }

  /** Stops taking calls, lets running ones finish for a while, then cuts them. */
  async stop(graceMs = 5000): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.stopping = true;
    this.server = undefined;
    this.attacher?.stop();
    await shutDown(server, graceMs, this.socketPath);
    this.logger.info('CSI services stopped', { endpoint: this.options.endpoint });
  }
}
