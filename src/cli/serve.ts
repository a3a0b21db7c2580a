import type * as http from 'node:http';
import * as path from 'node:path';
import { AdminServer } from '../api/server.js';
import { CsiServer, nodeStateDir } from '../csi/index.js';
import { Engine } from '../engine/index.js';
import { readMounts, type AttachMode } from '../host/index.js';
import type { Controllers } from '../k8s/index.js';
import { NbdServer } from '../nbd/index.js';
import { invalidArgument } from '../util/errors.js';
import { loosePermissions } from '../util/files.js';
import type { Logger } from '../util/log.js';
import { DaemonMetrics, parseListenAddress, serveMetrics } from './metrics.js';
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
  /** Kernel path: seconds the kernel holds a device's I/O while the daemon restarts (120). */
  deadConnTimeoutS?: number;
  /** Kubeconfig for the reconcilers; absent = in-cluster configuration. */
  kubeconfig?: string;
  /**
   * Whether the RecoveryPoint and VolumeRestore reconcilers run: `auto` runs them with a
   * kubeconfig, or inside a pod (KUBERNETES_SERVICE_HOST set), and not on a bare host.
   */
  reconcilers: 'auto' | 'on' | 'off';
  /** Full re-list period of the reconcilers, which also bounds how late an expiry shows. */
  resyncMs?: number;
  /** Where `/metrics` and `/healthz` are served; absent = not served. */
  metricsAddress?: { host: string; port: number };
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
  deadConnTimeoutS?: number;
  kubeconfig?: string;
  reconcilers?: string;
  resyncMs?: number;
  /** `PORT` (loopback), `:PORT` (all addresses) or `HOST:PORT`. */
  metricsAddress?: string;
  segmentSize?: number;
}

/** `--nbd-tcp`: a port alone binds loopback; another address must be named explicitly. */
export function parseNbdTcp(text: string): { host: string; port: number } {
  const match = /^(?:(.+):)?(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[2]) : NaN;
  if (!match || !(port >= 0 && port <= 65535)) {
    throw invalidArgument(`--nbd-tcp "${text}" must be PORT or HOST:PORT with a port from 0 to 65535 (0 picks a free one), e.g. 10809 or 0.0.0.0:10809`);
  }
  const host = (match[1] ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1');
  return { host, port };
}

function parseAttachMode(text: string): AttachMode | undefined {
  if (text === 'auto') return undefined;
  if (text === 'kernel' || text === 'fuse') return text;
  throw invalidArgument(`--attach "${text}" must be auto, kernel or fuse`);
}

function parseReconcilers(text: string): DaemonConfig['reconcilers'] {
  if (text === 'auto' || text === 'on' || text === 'off') return text;
  throw invalidArgument(`--reconcilers "${text}" must be auto, on or off`);
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
    ...(input.deadConnTimeoutS !== undefined ? { deadConnTimeoutS: input.deadConnTimeoutS } : {}),
    ...(input.kubeconfig !== undefined ? { kubeconfig: path.resolve(input.kubeconfig) } : {}),
    reconcilers: parseReconcilers(input.reconcilers ?? 'auto'),
    ...(input.resyncMs !== undefined ? { resyncMs: input.resyncMs } : {}),
    ...(input.metricsAddress !== undefined ? { metricsAddress: parseListenAddress(input.metricsAddress, '--metrics-address') } : {}),
    ...(input.segmentSize !== undefined ? { segmentSize: input.segmentSize } : {}),
  };
}

/**
 * Warns when other local users can read or change the store, which holds every volume's data:
 * one made by an older version, by hand or by a hostPath volume. Only a warning, because the
 * modes are the operator's to change (`chmod -R go-rwx`), and a check that fails must not stop
 * the node. Mounts inside the store (FUSE mounts of attached volumes) are not looked into.
 */
async function warnLoosePermissions(store: string, logger: Logger): Promise<void> {
  try {
    const inside = (await readMounts()).map((m) => m.mountPoint).filter((p) => p.startsWith(store + path.sep));
    const loose = await loosePermissions(store, new Set(inside));
    if (loose.length === 0) return;
    logger.warn('the store is open to other users: they may read volume data', {
      store,
      paths: loose.length,
      examples: loose.slice(0, 5),
      fix: `chmod -R go-rwx ${store}`,
    });
  } catch (err) {
    logger.warn('could not check the modes of the store', { store, error: err instanceof Error ? err.message : String(err) });
  }
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
    private readonly controllers: Controllers | undefined,
    private readonly metricsServer: http.Server | undefined,
    private readonly logger: Logger,
  ) {}

  /** What `/healthz` reports: the parts a node's volumes depend on. */
  health(): { ok: boolean; checks: Record<string, boolean> } {
    const checks = { engine: this.stopping === undefined, nbd: this.nbd.listening, csi: this.csi.ready };
    return { ok: Object.values(checks).every(Boolean), checks };
  }

  static async start(config: DaemonConfig, logger: Logger): Promise<Daemon> {
    const metrics = config.metricsAddress ? new DaemonMetrics() : undefined;
    const engine = await Engine.open({
      store: config.store,
      logger,
      ...(config.segmentSize !== undefined ? { segmentSize: config.segmentSize } : {}),
      ...(metrics ? { observer: metrics.engineObserver() } : {}),
    });
    // After the lock: a second daemon refused on a busy store has nothing to warn about.
    await warnLoosePermissions(config.store, logger);
    const admin = new AdminServer(engine, logger, { nodeId: config.nodeId });
    const nbd = new NbdServer(metrics ? metrics.countTraffic(engine) : engine, logger);
    metrics?.watch(engine, nbd);
    const csi = new CsiServer(engine, logger, {
      nodeId: config.nodeId,
      endpoint: config.csiEndpoint,
      ready: () => nbd.listening,
      node: {
        nbdSocket: config.nbdSocket,
        direct: nbd,
        ...(config.attachMode ? { attachMode: config.attachMode } : {}),
        ...(config.deadConnTimeoutS !== undefined ? { deadConnTimeoutS: config.deadConnTimeoutS } : {}),
      },
    });
    const wanted = config.reconcilers === 'on' || (config.reconcilers === 'auto' && (config.kubeconfig !== undefined || !!process.env.KUBERNETES_SERVICE_HOST));
    let controllers: Controllers | undefined;
    let metricsServer: http.Server | undefined;
    // The daemon exists before it is ready, so that /healthz can answer "not yet".
    const started: { daemon?: Daemon } = {};
    try {
      if (metrics && config.metricsAddress) {
        metricsServer = await serveMetrics(config.metricsAddress, metrics, () => started.daemon?.health() ?? { ok: false, checks: { starting: false } }, logger);
      }
      await admin.listen(config.adminSocket);
      // The data path comes up before CSI, so that a Probe answering "ready" means a node
      // can attach what the controller creates.
      await nbd.listenUnix(config.nbdSocket);
      if (config.nbdTcp) await nbd.listenTcp(config.nbdTcp.port, config.nbdTcp.host);
      await csi.start();
      // Last: a reconciler acts through the engine and reads what the CSI node service
      // staged. Loaded only when wanted: a daemon outside Kubernetes never loads the client.
      if (wanted) {
        controllers = (await import('../k8s/index.js')).Controllers.start({
          engine,
          node: config.nodeId,
          ...(config.kubeconfig !== undefined ? { kubeconfig: config.kubeconfig } : {}),
          nodeStateDir: nodeStateDir(config.store),
          logger,
          ...(config.resyncMs !== undefined ? { resyncMs: config.resyncMs } : {}),
          ...(metrics ? { observeReconcile: metrics.reconcileObserver() } : {}),
        });
      }
    } catch (err) {
      metricsServer?.close();
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
      reconcilers: controllers !== undefined,
      pid: process.pid,
    });
    started.daemon = new Daemon(config, engine, admin, nbd, csi, controllers, metricsServer, logger);
    return started.daemon;
  }

  /** Stops the services, then the engine; calling it again waits for the first stop. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.logger.info('tidemark daemon stopping', { store: this.config.store });
      // Top-down: CSI stops taking calls, NBD lets running requests finish (acknowledged
      // writes are in the journal either way), and the engine closes last. A restore that a
      // reconciler runs finishes first: the engine must not close under it.
      await this.controllers?.stop();
      await this.csi.stop();
      await this.nbd.close();
      await this.admin.close();
      await this.engine.close();
      await new Promise<void>((resolve) => (this.metricsServer ? this.metricsServer.close(() => resolve()) : resolve()));
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
