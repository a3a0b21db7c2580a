import * as os from 'node:os';
import { Option, type Command } from 'commander';
import { invalidArgument } from '../../util/errors.js';
import { createLogger } from '../../util/log.js';
import { SEGMENT_SIZE, parseDuration, parseSizeOption } from '../args.js';
import { globals, storeDir } from '../context.js';

const LOG_LEVELS = ['error', 'warn', 'info', 'debug'];

function resyncInterval(text: string): number {
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds < 1 || seconds > 86_400) throw invalidArgument(`--resync-interval "${text}" must be a number of seconds from 1 to 86400`);
  return seconds * 1000;
}

function deadTimeout(text: string): number {
  const seconds = parseDuration(text, '--nbd-dead-timeout');
  if (seconds > 86_400) throw invalidArgument(`--nbd-dead-timeout "${text}" must be at most 1d`);
  return seconds;
}

interface ServeOptions {
  nodeId?: string;
  csiEndpoint?: string;
  nbdSocket?: string;
  nbdTcp?: string;
  attach?: string;
  nbdDeadTimeout?: string;
  kubeconfig?: string;
  reconcilers?: string;
  resyncInterval?: string;
  metricsAddress?: string;
  segmentSize?: string;
  logLevel?: string;
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the daemon: engine, NBD server, admin API and CSI services for one store')
    .option('--node-id <id>', 'Kubernetes node name (default: the host name)')
    .option('--csi-endpoint <endpoint>', 'CSI socket, unix:///PATH (default: csi.sock in the store)')
    .option('--nbd-socket <path>', 'NBD socket (default: nbd.sock in the store)')
    .option('--nbd-tcp <[host:]port>', 'also serve NBD over TCP: a port alone listens on loopback only')
    .option('--attach <mode>', 'how CSI staging attaches volumes: auto (kernel nbd where loaded, else nbdfuse + loop), kernel or fuse', 'auto')
    .option('--nbd-dead-timeout <duration>', 'kernel path: how long the kernel holds a device\'s I/O for a restarting daemon before failing it', '120s')
    .option('--kubeconfig <file>', 'kubeconfig for the reconcilers (default: in-cluster)')
    .option('--reconcilers <mode>', 'run the RecoveryPoint and VolumeRestore reconcilers: auto (with --kubeconfig or inside a pod), on or off', 'auto')
    .option('--metrics-address <[host]:port>', 'serve Prometheus /metrics and /healthz here: PORT (loopback), :PORT (all addresses) or HOST:PORT')
    .option('--resync-interval <seconds>', 'how often the reconcilers re-list every object (and notice expired points)', '60')
    .option('--log-level <level>', 'error, warn, info or debug (default: $TIDEMARK_LOG_LEVEL or info)')
    .addOption(new Option('--segment-size <size>', 'journal segment size of new volumes; for tests only').hideHelp())
    .action(async (opts: ServeOptions, cmd: Command) => {
      // Loaded here so that client commands do not pay for loading the engine.
      const { daemonConfig, serve } = await import('../serve.js');
      const g = globals(cmd);
      const config = daemonConfig({
        store: storeDir(g),
        nodeId: opts.nodeId ?? os.hostname(),
        ...(g.adminSocket !== undefined ? { adminSocket: g.adminSocket } : {}),
        ...(opts.nbdSocket !== undefined ? { nbdSocket: opts.nbdSocket } : {}),
        ...(opts.nbdTcp !== undefined ? { nbdTcp: opts.nbdTcp } : {}),
        ...(opts.csiEndpoint !== undefined ? { csiEndpoint: opts.csiEndpoint } : {}),
        ...(opts.attach !== undefined ? { attachMode: opts.attach } : {}),
        ...(opts.nbdDeadTimeout !== undefined ? { deadConnTimeoutS: deadTimeout(opts.nbdDeadTimeout) } : {}),
        ...(opts.kubeconfig !== undefined ? { kubeconfig: opts.kubeconfig } : {}),
        ...(opts.reconcilers !== undefined ? { reconcilers: opts.reconcilers } : {}),
        ...(opts.metricsAddress !== undefined ? { metricsAddress: opts.metricsAddress } : {}),
        ...(opts.resyncInterval !== undefined ? { resyncMs: resyncInterval(opts.resyncInterval) } : {}),
        ...(opts.segmentSize !== undefined ? { segmentSize: parseSizeOption(opts.segmentSize, 'segment size', SEGMENT_SIZE) } : {}),
      });
      const level = opts.logLevel ?? (process.env.TIDEMARK_LOG_LEVEL || 'info');
      if (!LOG_LEVELS.includes(level)) throw invalidArgument(`unknown log level "${level}": use ${LOG_LEVELS.join(', ')}`);
      const logger = createLogger(level, 'tidemark');
      await serve(config, logger);
    });
}
