import * as path from 'node:path';
import { AdminServer } from '../api/server.js';
import { Engine } from '../engine/index.js';
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
  /** Where the CSI services listen, as a unix:// endpoint. */
  csiEndpoint: string;
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
  csiEndpoint?: string;
  kubeconfig?: string;
  segmentSize?: number;
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
    csiEndpoint,
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
    private readonly logger: Logger,
  ) {}

  static async start(config: DaemonConfig, logger: Logger): Promise<Daemon> {
    const engine = await Engine.open({ store: config.store, logger, ...(config.segmentSize !== undefined ? { segmentSize: config.segmentSize } : {}) });
    const admin = new AdminServer(engine, logger, { nodeId: config.nodeId });
    try {
      await admin.listen(config.adminSocket);
      // ---- NBD data path: start here. ------------------------------------------------------
      // src/nbd exports NbdServer; once it lands, construct it over `engine`, listen on
      // config.nbdSocket, and stop it in `stop` before the admin server.
      // ---- CSI services and Kubernetes reconcilers: start here, after NBD. ------------------
      // They listen on config.csiEndpoint and use config.kubeconfig / config.nodeId.
    } catch (err) {
      await admin.close().catch(() => undefined);
      await engine.close().catch(() => undefined);
      throw err;
    }
    logger.info('tidemark daemon ready', {
      store: config.store,
      nodeId: config.nodeId,
      adminSocket: config.adminSocket,
      nbdSocket: config.nbdSocket,
      csiEndpoint: config.csiEndpoint,
      kubeconfig: config.kubeconfig,
      pid: process.pid,
    });
    return new Daemon(config, engine, admin, logger);
  }

  /** Stops the services, then the engine; calling it again waits for the first stop. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.logger.info('tidemark daemon stopping', { store: this.config.store });
      // (CSI and NBD stop here first, once they exist.)
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
