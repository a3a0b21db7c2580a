import * as path from 'node:path';
import { AdminServer } from '../api/server.js';
import { CsiServer } from '../csi/index.js';
import { Engine } from '../engine/index.js';
import type { AttachMode } from '../host/index.js';
import { NbdServer } from '../nbd/index.js';
import { invalidArgument } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { ADMIN_SOCKET_FILE } from './context.js';

/** Everything `tidemark serve` was told, resolved to absolute paths and defaults. */
export interface DaemonConfig {
  store: string;
  nodeId: string;
  adminSocket: string;
  /** Where the NBD server listens (data path for nbd-client / nbdfuse). */
  nbdSocket: string;
  /** NBD over TCP, only when asked: loopback unless a host is given. */
  nbdTcp?: { host: string; port: number };
  /** Where the CSI services listen, as a unix:// endpoint. */
  csiEndpoint: string;
  /** How NodeStageVolume attaches devices; by default the kernel nbd driver where present. */
  attachMode?: AttachMode;
  /** Kubeconfig for the reconcilers; absent = in-cluster configuration. */
  kubeconfig?: string;
  /** Journal segment size of new volumes; only tests change it. */
  segmentSize?: number;
}

export interface DaemonConfigInput {
  store: string;
  nodeId: string;
  adminSocket?: string;
  nbdSocket?: string;
  /** `PORT` (loopback) or `HOST:PORT`. */
  nbdTcp?: string;
  csiEndpoint?: string;
  attachMode?: string;
  kubeconfig?: string;
  segmentSize?: number;
}

/** `--nbd-tcp`: a port alone binds loopback; another address must be named explicitly. */
export function parseNbdTcp(text: string): { host: string; port: number } {
  const match = /^(?:(.+):)?(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[2]) : NaN;
  if (!match || !(port >= 0 && port <= 65535)) {
    throw invalidArgument(`--nbd-tcp "${text}" must be PORT or HOST:PORT, e.g. 10809 or 0.0.0.0:10809`);
  }
  const host = (match[1] ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1');
  return { host, port };
}

function parseAttachMode(text: string): AttachMode | undefined {
  if (text === 'auto') return undefined;
  if (text === 'kernel' || text === 'fuse') return text;
  throw invalidArgument(`--attach "${text}" must be auto, kernel or fuse`);
}

/** Fills in the socket defaults: files in the store (design: `admin.sock`, `nbd.sock`, `csi.sock`). */
export function daemonConfig(input: DaemonConfigInput): DaemonConfig {
  const store = path.resolve(input.store);
  const csiEndpoint = input.csiEndpoint ?? `unix://${path.join(store, 'csi.sock')}`;
  if (!csiEndpoint.startsWith('unix://')) throw invalidArgument(`--csi-endpoint "${csiEndpoint}" must be a unix:// endpoint, e.g. unix:///csi/csi.sock`);
  if (!input.nodeId) throw invalidArgument('--node-id must not be empty');
  return {
    store,
    nodeId: input.nodeId,
    adminSocket: path.resolve(input.adminSocket ?? path.join(store, ADMIN_SOCKET_FILE)),
    nbdSocket: path.resolve(input.nbdSocket ?? path.join(store, 'nbd.sock')),
    ...(input.nbdTcp !== undefined ? { nbdTcp: parseNbdTcp(input.nbdTcp) } : {}),
    csiEndpoint,
    ...(input.attachMode !== undefined ? { attachMode: parseAttachMode(input.attachMode) } : {}),
    ...(input.kubeconfig !== undefined ? { kubeconfig: path.resolve(input.kubeconfig) } : {}),
    ...(input.segmentSize !== undefined ? { segmentSize: input.segmentSize } : {}),
  };
}

/**
 * One running daemon: the engine and the services over it. Started bottom-up (the engine
 * takes the store lock first, so a second daemon on the same store stops before touching any
 * socket) and stopped top-down (no service outlives the engine it calls).
 */
export class Daemon {
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly config: DaemonConfig,
    readonly engine: Engine,
    private readonly admin: AdminServer,
    readonly nbd: NbdServer,
    private readonly csi: CsiServer,
    private readonly logger: Logger,
  ) {}

  static async start(config: DaemonConfig, logger: Logger): Promise<Daemon> {
    const engine = await Engine.open({ store: config.store, logger, ...(config.segmentSize !== undefined ? { segmentSize: config.segmentSize } : {}) });
    const admin = new AdminServer(engine, logger, { nodeId: config.nodeId });
    const nbd = new NbdServer(engine, logger);
    const csi = new CsiServer(engine, logger, {
      nodeId: config.nodeId,
      endpoint: config.csiEndpoint,
      ready: () => nbd.listening,
      node: { nbdSocket: config.nbdSocket, ...(config.attachMode ? { attachMode: config.attachMode } : {}) },
    });
    try {
      await admin.listen(config.adminSocket);
      // The data path comes up before CSI, so that a Probe answering "ready" means a node
      // can attach what the controller creates.
      await nbd.listenUnix(config.nbdSocket);
      if (config.nbdTcp) await nbd.listenTcp(config.nbdTcp.port, config.nbdTcp.host);
      await csi.start();
    } catch (err) {
      await csi.stop(0).catch(() => undefined);
      await nbd.close().catch(() => undefined);
      await admin.close().catch(() => undefined);
      await engine.close().catch(() => undefined);
      throw err;
    }
    logger.info('tidemark daemon ready', {
      store: config.store,
      nodeId: config.nodeId,
      adminSocket: config.adminSocket,
      nbdSocket: config.nbdSocket,
      nbdTcp: config.nbdTcp,
      csiEndpoint: config.csiEndpoint,
      kubeconfig: config.kubeconfig,
      pid: process.pid,
    });
    return new Daemon(config, engine, admin, nbd, csi, logger);
  }

  /** Stops the services, then the engine; calling it again waits for the first stop. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.logger.info('tidemark daemon stopping', { store: this.config.store });
      // Top-down: CSI stops taking calls, NBD lets running requests finish (acknowledged
      // writes are in the journal either way), and the engine closes last.
      await this.csi.stop();
      await this.nbd.close();
      await this.admin.close();
      await this.engine.close();
      this.logger.info('tidemark daemon stopped', { store: this.config.store });
    })();
    return this.stopping;
  }
}

/**
 * Runs the daemon until SIGTERM or SIGINT, then shuts down cleanly. A second signal during
 * shutdown exits at once; the journal makes that safe, just slower to start next time.
 */
export async function serve(config: DaemonConfig, logger: Logger): Promise<void> {
  const daemon = await Daemon.start(config, logger);
  await new Promise<void>((resolve, reject) => {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        logger.warn('second signal during shutdown; exiting now', { signal });
        process.exit(1);
      }
      signalled = true;
      logger.info('signal received', { signal });
      daemon.stop().then(resolve, reject);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
