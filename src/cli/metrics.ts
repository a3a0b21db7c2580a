import * as http from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Engine, EngineObserver, VolumeInfo } from '../engine/index.js';
import type { NbdBackend, NbdServer } from '../nbd/index.js';
import { invalidArgument } from '../util/errors.js';
import type { Logger } from '../util/log.js';

/**
 * The daemon's Prometheus metrics. Volume state (journal size, snapshots, markers, the
 * recovery window) is read from the engine when Prometheus scrapes, so it costs nothing
 * between scrapes; traffic and latencies are counted as they happen.
 */
export class DaemonMetrics {
  readonly registry = new Registry();
  readonly readBytes: Counter<'volume'>;
  readonly writtenBytes: Counter<'volume'>;
  readonly operations: Counter<'volume' | 'operation'>;
  readonly syncSeconds: Histogram;
  readonly restoreSeconds: Histogram<'method'>;
  readonly restoreBytes: Gauge<'volume'>;
  readonly reconciles: Counter<'kind' | 'result'>;
  readonly reconcileSeconds: Histogram<'kind'>;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'tidemark_process_' });
    this.readBytes = new Counter({ name: 'tidemark_volume_read_bytes_total', help: 'Bytes read from a volume through the NBD data path.', labelNames: ['volume'], registers });
    this.writtenBytes = new Counter({ name: 'tidemark_volume_written_bytes_total', help: 'Bytes written (or zeroed) through the NBD data path.', labelNames: ['volume'], registers });
    this.operations = new Counter({ name: 'tidemark_volume_operations_total', help: 'NBD requests served, by operation.', labelNames: ['volume', 'operation'], registers });
    this.syncSeconds = new Histogram({
      name: 'tidemark_journal_sync_duration_seconds',
      help: 'Time one fdatasync of a journal takes: the floor under every FLUSH and FUA.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.restoreSeconds = new Histogram({ name: 'tidemark_restore_duration_seconds', help: 'How long restores took, by method.', labelNames: ['method'], buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900], registers });
    this.restoreBytes = new Gauge({ name: 'tidemark_restore_bytes_restored', help: 'Bytes the running restore of a volume has written so far.', labelNames: ['volume'], registers });
    this.reconciles = new Counter({ name: 'tidemark_reconcile_total', help: 'Reconciles of custom resources, by kind and result.', labelNames: ['kind', 'result'], registers });
    this.reconcileSeconds = new Histogram({ name: 'tidemark_reconcile_duration_seconds', help: 'How long one reconcile took.', labelNames: ['kind'], buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120], registers });
  }

  /** What the engine measures, reported here. */
  engineObserver(): EngineObserver {
    return {
      journalSynced: (seconds) => this.syncSeconds.observe(seconds),
      restoreProgress: (volume, progress) => this.restoreBytes.set({ volume }, progress.bytesRestored),
      restoreFinished: (volume, method, seconds) => {
        this.restoreSeconds.observe({ method: method ?? 'failed' }, seconds);
        this.restoreBytes.remove({ volume });
      },
    };
  }

  /** Reconcile outcomes, as the work queues report them. */
  reconcileObserver(): (kind: string, result: 'success' | 'error' | 'conflict', seconds: number) => void {
    return (kind, result, seconds) => {
      this.reconciles.inc({ kind, result });
      this.reconcileSeconds.observe({ kind }, seconds);
    };
  }

  /** Registers the gauges read from the running daemon at scrape time. */
  watch(engine: Pick<Engine, 'listVolumes'>, nbd: Pick<NbdServer, 'load'>): void {
    const registers = [this.registry];

    const perVolume = (name: string, help: string, value: (v: VolumeInfo) => number | undefined) =>
      new Gauge({
        name,
        help,
        labelNames: ['volume'],
        registers,
        collect() {
          this.reset();
          for (const volume of engine.listVolumes()) {
            const measured = value(volume);
            if (measured !== undefined) this.set({ volume: volume.name }, measured);
          }
        },
      });
    perVolume('tidemark_journal_bytes', 'Bytes of journal a volume keeps.', (s) => s.journalBytes);
    perVolume('tidemark_journal_segments', 'Journal segment files a volume keeps.', (s) => s.journalSegments);
    perVolume('tidemark_journal_direct_written_bytes', 'Journal bytes a volume wrote past the page cache (O_DIRECT) since the daemon opened it; 0 where the filesystem refuses O_DIRECT or lays writes out for reflinks.', (s) => s.journalDirectBytes);
    perVolume('tidemark_volume_size_bytes', 'Size of a volume.', (s) => s.size);
    perVolume('tidemark_volume_snapshots', 'Snapshots of a volume, its own bases included.', (s) => s.snapshotCount);
    perVolume('tidemark_volume_markers', 'Markers in the journal of a volume, expired ones included.', (s) => s.markerCount);
    perVolume('tidemark_volume_sequence', 'Newest journal sequence number of a volume.', (s) => s.sequence);
    perVolume('tidemark_volume_recovery_window_start_seconds', 'Unix time of the earliest point a volume can be restored to.', (s) => (s.earliestRecoverableTime === undefined ? undefined : s.earliestRecoverableTime.getTime() / 1000));
    perVolume('tidemark_volume_holders', 'NBD connections and attachments holding a volume.', (s) => s.holders.length);
    new Gauge({
      name: 'tidemark_nbd_connections',
      help: 'NBD client connections open now.',
      registers,
      collect() {
        this.set(nbd.load().connections);
      },
    });
    new Gauge({
      name: 'tidemark_nbd_buffered_bytes',
      help: 'Request and reply payload bytes the NBD server holds now, against its budget.',
      registers,
      collect() {
        this.set(nbd.load().bufferedBytes);
      },
    });
    new Counter({
      name: 'tidemark_nbd_read_bytes_sent_from_file_total',
      help: 'Read reply bytes sent from image files with sendfile, never copied through the daemon; 0 where the kernel lacks cachestat (before 6.5).',
      registers,
      collect() {
        this.reset();
        this.inc(nbd.load().sentFromFileBytes);
      },
    });
  }

  /** Wraps the NBD backend so that data-path traffic is counted per volume. */
  countTraffic(backend: NbdBackend): NbdBackend {
    const count = (volume: string, operation: string, bytes?: Counter<'volume'>, length = 0) => {
      this.operations.inc({ volume, operation });
      bytes?.inc({ volume }, length);
    };
    const readInto = backend.readInto?.bind(backend);
    const cachedImageRange = backend.cachedImageRange?.bind(backend);
    return {
      ...bindAll(backend),
      read: async (name, offset, length) => {
        const data = await backend.read(name, offset, length);
        count(name, 'read', this.readBytes, length);
        return data;
      },
      ...(readInto
        ? {
            readInto: async (name: string, offset: number, target: Buffer) => {
              await readInto(name, offset, target);
              count(name, 'read', this.readBytes, target.length);
            },
          }
        : {}),
      ...(cachedImageRange
        ? {
            // A descriptor given is a read answered from it, at once.
            cachedImageRange: (name: string, offset: number, length: number) => {
              const fd = cachedImageRange(name, offset, length);
              if (fd !== undefined) count(name, 'read', this.readBytes, length);
              return fd;
            },
          }
        : {}),
      write: async (name, offset, data, options) => {
        const sequence = await backend.write(name, offset, data, options);
        count(name, 'write', this.writtenBytes, data.length);
        return sequence;
      },
      zero: async (name, offset, length, options) => {
        const sequence = await backend.zero(name, offset, length, options);
        count(name, options?.trim ? 'trim' : 'zero', this.writtenBytes, length);
        return sequence;
      },
      flush: async (name) => {
        const sequence = await backend.flush(name);
        count(name, 'flush');
        return sequence;
      },
    };
  }
}

/** The backend's methods bound to it, so a spread copy still calls them on the engine. */
function bindAll(backend: NbdBackend): NbdBackend {
  return {
    has: backend.has.bind(backend),
    volumeInfo: backend.volumeInfo.bind(backend),
    listVolumes: backend.listVolumes.bind(backend),
    listSnapshots: backend.listSnapshots.bind(backend),
    read: backend.read.bind(backend),
    write: backend.write.bind(backend),
    zero: backend.zero.bind(backend),
    flush: backend.flush.bind(backend),
    allocated: backend.allocated.bind(backend),
    diff: backend.diff.bind(backend),
    hold: backend.hold.bind(backend),
    release: backend.release.bind(backend),
  };
}

export interface Health {
  ok: boolean;
  /** What is up and what is not, for the probe's log and for people. */
  checks: Record<string, boolean>;
}

/** `HOST:PORT` or `:PORT` (all addresses) or `PORT` (loopback). */
export function parseListenAddress(text: string, option: string): { host: string; port: number } {
  const match = /^(?:(.*):)?(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[2]) : NaN;
  if (!match || !(port >= 0 && port <= 65535)) throw invalidArgument(`${option} "${text}" must be PORT, :PORT or HOST:PORT, e.g. 127.0.0.1:9808 or :9808`);
  const host = match[1] === undefined ? '127.0.0.1' : match[1] === '' ? '0.0.0.0' : match[1].replace(/^\[(.*)\]$/, '$1');
  return { host, port };
}

/**
 * Serves `/metrics` (Prometheus text format) and `/healthz` (200 when every part of the
 * daemon is up, 503 otherwise, with the checks as JSON), for Prometheus and the liveness probe.
 */
export async function serveMetrics(address: { host: string; port: number }, metrics: DaemonMetrics, health: () => Health, logger: Logger): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    if (url === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(text),
        (err: unknown) => {
          logger.warn('collecting metrics failed', { error: String(err) });
          res.writeHead(500, { 'Content-Type': 'text/plain' }).end('collecting metrics failed\n');
        },
      );
      return;
    }
    if (url === '/healthz' || url === '/readyz') {
      const state = health();
      res.writeHead(state.ok ? 200 : 503, { 'Content-Type': 'application/json' }).end(JSON.stringify(state) + '\n');
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: try /metrics or /healthz\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  logger.info('metrics listening', { address: typeof bound === 'object' && bound ? `${bound.address}:${bound.port}` : String(bound) });
  return server;
}
