import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { TidemarkError, alreadyExists, busy, classifyError, invalidArgument, notFound, outOfRange } from '../util/errors.js';
import { PRIVATE_FILE_MODE, fsyncDir, makePrivateDir } from '../util/files.js';
import { silentLogger, type Logger } from '../util/log.js';
import { isPowerOfTwo } from '../util/sizes.js';
import { systemClock, type Clock } from '../util/time.js';
import { intersect, normalize, type Extent } from './extents.js';
import { CheckpointDamagedError } from './checkpoint.js';
import { checkName } from './names.js';
import { baseSequence, earliestRecoverable, expiredError, findBase, replayInto, restoreFromSnapshot, rewindInPlace, validFrom, type Base } from './restore.js';
import { enforceRetentionLocked, type RetentionOutcome } from './retention.js';
import { lockStore } from './store-lock.js';
import type {
  InterruptedRestore,
  MarkerInfo,
  RestoreProgress,
  RestoreRequest,
  RestoreResult,
  RetentionPolicy,
  SnapshotInfo,
  VolumeInfo,
  VolumeOptions,
  WriteOptions,
} from './types.js';
import { DEFAULT_BLOCK_SIZE, DEFAULT_GRANULARITY, DEFAULT_SEGMENT_SIZE, Volume, type Held, type SnapshotMeta } from './volume.js';

export interface EngineOptions {
  store: string;
  logger?: Logger;
  /** Journal segment size; small values make retention tests quick. */
  segmentSize?: number;
  /** How often checkpoints and age-based retention run; 0 turns the timer off. */
  upkeepIntervalMs?: number;
  /** Measurements for whoever reports them (the daemon's metrics); the engine only calls. */
  observer?: EngineObserver;
  /**
   * Where record, marker, snapshot and volume times and retention's "now" come from; the
   * system clock by default. Tests pass their own to separate moments without sleeping.
   */
  clock?: Clock;
}

export interface EngineObserver {
  /** A journal fdatasync completed after this many seconds. */
  journalSynced?(seconds: number): void;
  /** A restore finished (or failed: `method` is then undefined). */
  restoreFinished?(volume: string, method: RestoreResult['method'] | undefined, seconds: number): void;
  /** A running restore has written this many bytes of `total`. */
  restoreProgress?(volume: string, progress: RestoreProgress): void;
}

const GROUPS_FILE = 'groups.log';

/**
 * The storage engine: every volume of one store, and the operations that span volumes (group
 * markers) or need the store (volume creation and deletion, the lock).
 */
export class Engine {
  private volumes = new Map<string, Volume>();
  /**
   * Volumes that did not open because their checkpoint is damaged, with the error. They stay
   * out of service, and every call that names one fails with that error, until the store's
   * owner repairs or removes them; the rest of the store works meanwhile.
   */
  private broken = new Map<string, CheckpointDamagedError>();
  /** Upkeep under way, per volume name. */
  private upkeepRunning = new Map<string, Promise<void>>();
  /** Names of volumes being built, so two concurrent creations cannot both pass the check. */
  private creating = new Set<string>();
  /** Names of volumes being deleted: they stay listed until their directory is renamed away. */
  private deleting = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    readonly store: string,
    private readonly logger: Logger,
    private readonly segmentSize: number,
    private readonly unlock: () => Promise<void>,
    private readonly observer: EngineObserver,
    private readonly clock: Clock,
  ) {}

  static async open(options: EngineOptions): Promise<Engine> {
    const logger = options.logger ?? silentLogger();
    const store = path.resolve(options.store);
    try {
      await makePrivateDir(path.join(store, 'volumes'));
    } catch (err) {
      throw classifyError(err, `creating store ${store}`);
    }
    const unlock = await lockStore(store);
    const engine = new Engine(store, logger, options.segmentSize ?? DEFAULT_SEGMENT_SIZE, unlock, options.observer ?? {}, options.clock ?? systemClock);
    try {
      await engine.loadVolumes();
    } catch (err) {
      await unlock();
      throw err;
    }
    const interval = options.upkeepIntervalMs ?? 30_000;
    if (interval > 0) {
      engine.timer = setInterval(() => void engine.upkeep(), interval);
      engine.timer.unref();
    }
    logger.info('engine opened', { store, volumes: engine.volumes.size });
    return engine;
  }

  private async loadVolumes(): Promise<void> {
    const root = path.join(this.store, 'volumes');
    for (const entry of await fs.readdir(root)) {
      const dir = path.join(root, entry);
      if (entry.startsWith('.')) {
        // A creation or deletion that a crash interrupted.
        await fs.rm(dir, { recursive: true, force: true });
        continue;
      }
      let volume: Volume;
      try {
        volume = await Volume.open(dir, this.logger);
      } catch (err) {
        if (!(err instanceof CheckpointDamagedError)) throw err;
        this.logger.error('volume left out: its checkpoint is damaged', { volume: entry, file: err.file, error: err.message });
        this.broken.set(entry, err);
        continue;
      }
      this.attach(volume);
    }
    await this.dropIncompleteGroups();
  }

  private attach(volume: Volume): void {
    volume.onUpkeepDue = () => void this.scheduleUpkeep(volume);
    volume.observeJournalSyncs(this.observer.journalSynced?.bind(this.observer));
    volume.useClock(this.clock);
    this.volumes.set(volume.name, volume);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const volume of this.volumes.values()) await volume.close();
    this.volumes.clear();
    await this.unlock();
    this.logger.info('engine closed', { store: this.store });
  }

  // ---- volumes ---------------------------------------------------------------------------

  private volume(name: string): Volume {
    const volume = this.volumes.get(name);
    if (!volume) throw this.broken.get(name) ?? notFound(`volume "${name}" does not exist`, { volume: name });
    return volume;
  }

  has(name: string): boolean {
    return this.volumes.has(name) || this.broken.has(name);
  }

  async createVolume(name: string, options: VolumeOptions): Promise<VolumeInfo> {
    checkName('volume', name);
    const settings = validateVolumeOptions(options);
    if (this.volumes.has(name)) throw alreadyExists(`volume "${name}" already exists`, { volume: name });
    const broken = this.broken.get(name);
    if (broken) throw broken;
    const volume = await this.materialise(name, settings);
    this.logger.info('volume created', { volume: name, size: settings.size, blockSize: settings.blockSize, granularity: settings.granularity });
    return this.info(volume);
  }

  /**
   * Builds a volume in a hidden directory and renames it into place, so a crash leaves none
   * or all of it. `populate` fills it (a journal replay) while it is still hidden.
   */
  private async materialise(
    name: string,
    settings: Required<Omit<VolumeOptions, 'retention'>> & { retention: RetentionPolicy },
    initialImage?: string,
    populate?: (volume: Volume, held: Held) => Promise<void>,
  ): Promise<Volume> {
    if (this.volumes.has(name) || this.creating.has(name)) throw alreadyExists(`volume "${name}" already exists`, { volume: name });
    const broken = this.broken.get(name);
    if (broken) throw broken;
    this.creating.add(name);
    const root = path.join(this.store, 'volumes');
    // Not named after the volume: a name may take all 255 bytes a directory entry allows.
    const staging = path.join(root, `.creating-${randomUUID()}`);
    try {
      try {
        const built = await Volume.create(staging, name, { ...settings, segmentSize: this.segmentSize, createdAt: this.clock() }, this.logger, initialImage);
        try {
          if (populate) await built.exclusive((held) => populate(built, held));
        } finally {
          await built.close();
        }
        // A long replay can outlast the engine; the store is no longer ours to add to then.
        if (this.closed) throw new TidemarkError('UNAVAILABLE', `the engine closed while volume "${name}" was being built`, { volume: name });
        await fs.rename(staging, path.join(root, name));
        await fsyncDir(root);
      } catch (err) {
        await fs.rm(staging, { recursive: true, force: true });
        throw classifyError(err, `creating volume "${name}"`);
      }
      const volume = await Volume.open(path.join(root, name), this.logger);
      this.attach(volume);
      return volume;
    } finally {
      this.creating.delete(name);
    }
  }

  async deleteVolume(name: string, options: { force?: boolean } = {}): Promise<void> {
    const volume = this.volume(name);
    if (this.deleting.has(name)) throw busy(`volume "${name}" is being deleted`, { volume: name });
    volume.assertNotInUse('delete', options.force);
    if (volume.pinned) throw busy(`volume "${name}" is being read by a restore; try again when it ends`, { volume: name });
    this.deleting.add(name);
    try {
      // A holder that outlived the volume would write into whatever takes the name next.
      const revoked = volume.revokeHolders();
      if (revoked.length > 0) this.logger.warn('volume deleted while in use; its holders were cut off', { volume: name, holders: revoked });
      await volume.close();
      const root = path.join(this.store, 'volumes');
      const doomed = path.join(root, `.deleting-${randomUUID()}`);
      try {
        await fs.rename(path.join(root, name), doomed);
      } catch (err) {
        // Still in the store, so it comes back at the next start: it must stay served now too.
        await this.reopen(name);
        throw classifyError(err, `deleting volume "${name}"`);
      }
      this.volumes.delete(name);
      await fsyncDir(root);
      await fs.rm(doomed, { recursive: true, force: true });
    } finally {
      this.deleting.delete(name);
    }
    this.logger.info('volume deleted', { volume: name });
  }

  /** Opens a volume again after a deletion that could not go through. */
  private async reopen(name: string): Promise<void> {
    try {
      this.attach(await Volume.open(path.join(this.store, 'volumes', name), this.logger));
    } catch (err) {
      this.volumes.delete(name);
      this.logger.error('a volume whose deletion failed could not be opened again; it is left out until the next start', { volume: name, error: String(err) });
    }
  }

  listVolumes(): VolumeInfo[] {
    return [...this.volumes.values()].sort((a, b) => a.name.localeCompare(b.name)).map((v) => this.info(v));
  }

  volumeInfo(name: string): VolumeInfo {
    return this.info(this.volume(name));
  }

  private info(volume: Volume): VolumeInfo {
    const earliest = earliestRecoverable(volume);
    return volume.info(earliest, earliestRecoverableTime(volume, earliest));
  }

  async setRetention(name: string, retention: RetentionPolicy): Promise<VolumeInfo> {
    const volume = this.volume(name);
    validateRetention(retention);
    return volume.exclusive(async (held) => {
      volume.setRetentionLocked(held, retention);
      await volume.writeCheckpoint(held);
      await enforceRetentionLocked(volume, held, this.logger, this.clock());
      return this.info(volume);
    });
  }

  /** Grows a volume (volumes never shrink: a filesystem on it would lose data). */
  async resizeVolume(name: string, size: number): Promise<VolumeInfo> {
    const volume = this.volume(name);
    await volume.exclusive((held) => volume.resizeLocked(held, size));
    return this.info(volume);
  }

  async enforceRetention(name: string, now?: number): Promise<RetentionOutcome> {
    const volume = this.volume(name);
    return volume.exclusive((held) => enforceRetentionLocked(volume, held, this.logger, now ?? this.clock()));
  }

  /**
   * Marks a volume in use (by an NBD connection or an attachment) until `release`. If the
   * volume is deleted by force meanwhile, `onRevoke` is called first: the holder must then
   * stop using the name, which a new volume may take.
   */
  hold(name: string, holder: string, onRevoke?: () => void): void {
    if (this.deleting.has(name)) throw notFound(`volume "${name}" is being deleted`, { volume: name });
    this.volume(name).hold(holder, onRevoke);
  }

  release(name: string, holder: string): void {
    this.volumes.get(name)?.release(holder);
  }

  // ---- data path -------------------------------------------------------------------------
  // Async throughout, so that a missing volume or a bad range rejects the promise instead of
  // throwing at the caller, which may be chaining .then(reply, replyError).

  async read(name: string, offset: number, length: number): Promise<Buffer> {
    return this.volume(name).read(offset, length);
  }

  /** Like `read`, into a buffer the caller owns: the NBD server reuses its reply buffers. */
  async readInto(name: string, offset: number, target: Buffer): Promise<void> {
    return this.volume(name).readInto(offset, target);
  }

  /** See Volume.cachedImageRange: the image's descriptor when a read may be sent from the file, synchronously. */
  cachedImageRange(name: string, offset: number, length: number): number | undefined {
    return this.volume(name).cachedImageRange(offset, length);
  }

  /** The caller may reuse `data` once the promise settles: the journal has it by then, and nothing keeps it. */
  async write(name: string, offset: number, data: Buffer, options?: WriteOptions): Promise<number> {
    return this.volume(name).write(offset, data, options);
  }

  async zero(name: string, offset: number, length: number, options?: WriteOptions & { trim?: boolean }): Promise<number> {
    return this.volume(name).zero(offset, length, options);
  }

  async flush(name: string): Promise<number> {
    return this.volume(name).flush();
  }

  // ---- snapshots -------------------------------------------------------------------------

  async createSnapshot(volumeName: string, name: string): Promise<SnapshotInfo> {
    checkName('snapshot', name);
    const volume = this.volume(volumeName);
    const meta = await volume.exclusive((held) => volume.snapshotLocked(held, name, false));
    return snapshotInfo(volume, meta);
  }

  /**
   * Snapshots several volumes at one cut: writes to all of them are held from the first copy
   * to the last, so together the snapshots show one moment. All or none: a failure removes
   * the ones already taken (after a crash, the caller that names the group clears them).
   */
  async createSnapshotGroup(volumeNames: string[], name: string): Promise<SnapshotInfo[]> {
    checkName('snapshot', name);
    if (volumeNames.length === 0) throw invalidArgument('a group snapshot needs at least one volume');
    const volumes = [...new Set(volumeNames)].sort().map((v) => this.volume(v));
    const taken: Volume[] = [];
    try {
      const metas = await exclusiveAll(volumes, async (heldOf) => {
        const out: SnapshotMeta[] = [];
        for (const volume of volumes) {
          out.push(await volume.snapshotLocked(heldOf(volume), name, false));
          taken.push(volume);
        }
        return out;
      });
      this.logger.info('group snapshot created', { snapshot: name, volumes: volumes.map((v) => v.name), sequences: metas.map((m) => m.sequence) });
      return metas.map((meta, i) => snapshotInfo(volumes[i]!, meta));
    } catch (err) {
      for (const volume of taken) await volume.exclusive((held) => volume.deleteSnapshotLocked(held, name)).catch(() => undefined);
      throw classifyError(err, `taking group snapshot "${name}"`);
    }
  }

  listSnapshots(volumeName: string, options: { includeInternal?: boolean } = {}): SnapshotInfo[] {
    const volume = this.volume(volumeName);
    return volume
      .snapshotMeta()
      .filter((s) => options.includeInternal || !s.internal)
      .sort((a, b) => a.sequence - b.sequence)
      .map((s) => snapshotInfo(volume, s));
  }

  async deleteSnapshot(volumeName: string, name: string): Promise<void> {
    const volume = this.volume(volumeName);
    const meta = volume.snapshotMeta().find((s) => s.name === name);
    if (meta?.internal) throw invalidArgument(`snapshot "${name}" is the engine's own base; it goes when the journal before it is freed`);
    await volume.exclusive(async (held) => {
      const snapshot = volume.snapshotMeta().find((s) => s.name === name);
      // When the oldest recoverable point starts from this snapshot, deleting its copy would
      // expire every later marker although their journal is still here: the engine keeps it
      // as its own base instead, until retention frees the journal it serves.
      const isBase = snapshot !== undefined && validFrom(snapshot) === earliestRecoverable(volume) && volume.firstSequence <= snapshot.sequence + 1;
      if (isBase) await volume.retireSnapshotLocked(held, name);
      else await volume.deleteSnapshotLocked(held, name);
    });
  }

  /** Path of a snapshot's image, for layers that serve snapshot data (NBD, CSI clones). */
  snapshotImagePath(volumeName: string, name: string): string {
    const volume = this.volume(volumeName);
    this.snapshot(volume, name);
    return volume.snapshotPath(name);
  }

  private snapshot(volume: Volume, name: string): SnapshotMeta {
    const meta = volume.snapshotMeta().find((s) => s.name === name);
    if (!meta) throw notFound(`snapshot "${name}" of volume "${volume.name}" does not exist`, { volume: volume.name, snapshot: name });
    return meta;
  }

  // ---- markers ---------------------------------------------------------------------------

  /**
   * Records a marker on each volume at one consistent cut: writes to all of them are held
   * while the markers are recorded. Several volumes make a group marker, which counts only
   * once its group is committed to the store.
   */
  async createMarker(name: string, volumeNames: string[]): Promise<MarkerInfo[]> {
    checkName('marker', name);
    if (volumeNames.length === 0) throw invalidArgument('a marker needs at least one volume');
    const unique = [...new Set(volumeNames)].sort();
    const volumes = unique.map((v) => this.volume(v));
    for (const volume of volumes) {
      if (volume.markerMeta().some((m) => m.name === name)) {
        throw alreadyExists(`marker "${name}" already exists on volume "${volume.name}"`, { volume: volume.name, marker: name });
      }
    }
    const group = volumes.length > 1 ? randomUUID() : '';
    const recorded: { volume: Volume; sequence: number; createdAt: number }[] = [];
    try {
      await exclusiveAll(volumes, async (heldOf) => {
        try {
          for (const volume of volumes) {
            const meta = await volume.markerLocked(heldOf(volume), name, group);
            recorded.push({ volume, sequence: meta.sequence, createdAt: meta.createdAt });
          }
          if (group) await this.commitGroup(group, name, unique);
        } catch (err) {
          // A group that did not commit is dropped again, here and, after a crash, at start-up.
          if (group) for (const { volume } of recorded) volume.dropMarkersLocked(heldOf(volume), (m) => m.group === group);
          throw err;
        }
      });
    } catch (err) {
      throw classifyError(err, `recording marker "${name}"`);
    }
    this.logger.info('marker created', { marker: name, group: group || undefined, volumes: unique, sequences: recorded.map((r) => r.sequence) });
    return recorded.map(({ volume, sequence, createdAt }) => ({
      volume: volume.name,
      name,
      sequence,
      createdAt: new Date(createdAt),
      group,
      expired: false,
    }));
  }

  private async commitGroup(group: string, name: string, volumes: string[]): Promise<void> {
    const handle = await fs.open(path.join(this.store, GROUPS_FILE), 'a', PRIVATE_FILE_MODE);
    try {
      // The leading newline ends a line that a crash or a full disk left torn, which would
      // otherwise swallow this entry; writeFile also loops over short writes.
      await handle.writeFile('\n' + JSON.stringify({ group, name, volumes }) + '\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  private async dropIncompleteGroups(): Promise<void> {
    let committed = new Set<string>();
    try {
      const text = await fs.readFile(path.join(this.store, GROUPS_FILE), 'utf8');
      committed = new Set(
        text
          .split('\n')
          .filter((line) => line.trim())
          .flatMap((line) => {
            try {
              return [(JSON.parse(line) as { group: string }).group];
            } catch {
              return [];
            }
          }),
      );
    } catch {
      // No group marker was ever committed.
    }
    for (const volume of this.volumes.values()) {
      await volume.exclusive(async (held) => {
        const dropped = volume.dropMarkersLocked(held, (m) => m.group !== '' && !committed.has(m.group));
        if (dropped.length === 0) return;
        this.logger.warn('dropped markers of a group marker interrupted by a crash', { volume: volume.name, markers: dropped.map((m) => m.name) });
        await volume.writeCheckpoint(held);
      });
    }
  }

  listMarkers(volumeName: string): MarkerInfo[] {
    const volume = this.volume(volumeName);
    const earliest = earliestRecoverable(volume);
    return [...volume.markerMeta()]
      .sort((a, b) => a.sequence - b.sequence)
      .map((m) => ({ volume: volume.name, name: m.name, sequence: m.sequence, createdAt: new Date(m.createdAt), group: m.group, expired: m.sequence < earliest }));
  }

  // ---- restores --------------------------------------------------------------------------

  async restore(request: RestoreRequest, onProgress?: (progress: RestoreProgress) => void): Promise<RestoreResult> {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    const volume = request.target ?? request.volume;
    const report = (progress: RestoreProgress) => {
      this.observer.restoreProgress?.(volume, progress);
      onProgress?.(progress);
    };
    try {
      const result = await this.runRestore(request, report);
      this.observer.restoreFinished?.(volume, result.method, seconds());
      return result;
    } catch (err) {
      this.observer.restoreFinished?.(volume, undefined, seconds());
      throw err;
    }
  }

  private async runRestore(request: RestoreRequest, onProgress: (progress: RestoreProgress) => void): Promise<RestoreResult> {
    const started = Date.now();
    const volume = this.volume(request.volume);
    const areas = request.ranges ? this.checkAreas(volume, request.ranges) : undefined;
    let settings = settingsOf(volume);
    if (request.target !== undefined) {
      checkName('volume', request.target);
      if (this.has(request.target)) throw alreadyExists(`volume "${request.target}" already exists`, { volume: request.target });
      if (areas) throw invalidArgument('ranges apply to in-place restores; a new volume always receives the whole point');
      settings = targetSettings(volume, request.targetOptions);
    } else {
      if (request.targetOptions) throw invalidArgument('target options apply to restores into a new volume');
      volume.assertNotInUse('restore', request.force);
    }
    // Pinned under the lock: retention runs under it too, so one already under way finishes
    // before the restore looks for its base, and none starts until the restore is done.
    const unpin = await volume.exclusive(async () => volume.pin());
    try {
      const source = request.source;
      const finish = (pointSequence: number, method: RestoreResult['method'], progress: RestoreProgress, base?: string): RestoreResult => {
        const result = { volume: request.target ?? volume.name, pointSequence, method, baseSnapshot: base, durationMs: Date.now() - started, ...progress };
        this.logger.info('restore finished', { ...result, source: volume.name });
        return result;
      };
      if ('snapshot' in source) {
        const snapshot = this.snapshot(volume, source.snapshot);
        if (request.target !== undefined) {
          const target = await this.materialise(request.target, settings, volume.snapshotPath(snapshot.name));
          const progress = { bytesTotal: target.size, bytesRestored: target.size };
          onProgress?.(progress);
          return finish(snapshot.sequence, 'rebuild', progress, snapshot.name);
        }
        const record = { source: `snapshot "${snapshot.name}"`, pointSequence: snapshot.sequence, ranges: areas };
        const progress = await volume.exclusive((held) =>
          this.inPlaceLocked(volume, held, record, (begin) => restoreFromSnapshot(volume, held, snapshot, areas, onProgress, begin)),
        );
        return finish(snapshot.sequence, 'snapshot-diff', progress, snapshot.name);
      }
      const { point, what } = await this.resolvePoint(volume, source);
      const base = findBase(volume, point);
      if (!base || point < earliestRecoverable(volume)) throw expiredError(volume, what, point);
      const baseName = base.kind === 'snapshot' ? base.snapshot.name : undefined;
      if (request.target !== undefined) {
        // Replayed while the new volume is still hidden: a crash leaves no half-made volume
        // under the name, and a retry starts afresh.
        let progress: RestoreProgress = { bytesTotal: 0, bytesRestored: 0 };
        const initialImage = base.kind === 'snapshot' ? volume.snapshotPath(base.snapshot.name) : undefined;
        await this.materialise(request.target, settings, initialImage, async (target, held) => {
          progress = await replayInto(volume, target, held, base, point, onProgress);
        });
        return finish(point, 'rebuild', progress, baseName);
      }
      const record = { source: what, pointSequence: point, ranges: areas };
      const progress = await volume.exclusive((held) =>
        this.inPlaceLocked(volume, held, record, (begin) => rewindInPlace(volume, held, this.freshBase(volume, point, base), point, areas, onProgress, begin)),
      );
      return finish(point, 'rewind', progress, baseName);
    } finally {
      unpin();
    }
  }

  /**
   * Runs an in-place restore under the volume lock, recording before its first write that it
   * is under way, and forgetting that once it has completed.
   */
  private async inPlaceLocked(
    volume: Volume,
    held: Held,
    restore: { source: string; pointSequence: number; ranges: Extent[] | undefined },
    run: (beforeFirstWrite: () => Promise<void>) => Promise<RestoreProgress>,
  ): Promise<RestoreProgress> {
    const record: InterruptedRestore = { source: restore.source, pointSequence: restore.pointSequence, startedAt: new Date(this.clock()), ...(restore.ranges ? { ranges: restore.ranges } : {}) };
    const progress = await run(() => volume.beginRestoreLocked(held, record));
    await volume.endRestoreLocked(held, record);
    return progress;
  }

  /**
   * Forgets that an in-place restore was cut short, leaving the volume's data as it is (a
   * mix of old data and the point's); for when the user has dealt with it otherwise.
   */
  async clearInterruptedRestore(name: string): Promise<VolumeInfo> {
    const volume = this.volume(name);
    const cleared = await volume.exclusive((held) => volume.clearRestoreLocked(held));
    if (cleared) {
      this.logger.warn('interrupted restore cleared by request; the data stays as the restore left it', {
        volume: name,
        source: cleared.source,
        pointSequence: cleared.pointSequence,
      });
    }
    return this.info(volume);
  }

  /** The base may have changed while waiting for the lock; look again under it. */
  private freshBase(volume: Volume, point: number, fallback: Base): Base {
    const base = findBase(volume, point);
    if (!base) throw expiredError(volume, `sequence ${point}`, point);
    return baseSequence(base) === baseSequence(fallback) ? fallback : base;
  }

  private async resolvePoint(volume: Volume, source: RestoreRequest['source']): Promise<{ point: number; what: string }> {
    if ('marker' in source) {
      const marker = volume.markerMeta().find((m) => m.name === source.marker);
      if (!marker) throw notFound(`marker "${source.marker}" does not exist on volume "${volume.name}"`, { volume: volume.name, marker: source.marker });
      return { point: marker.sequence, what: `marker "${marker.name}"` };
    }
    if ('sequence' in source) {
      if (!Number.isSafeInteger(source.sequence) || source.sequence < 0 || source.sequence > volume.lastSequence) {
        throw invalidArgument(`sequence ${source.sequence} is not in the history of volume "${volume.name}"`);
      }
      return { point: source.sequence, what: `sequence ${source.sequence}` };
    }
    if (!('time' in source)) throw invalidArgument('a restore needs a snapshot, a marker or a time');
    const time = source.time.getTime();
    if (Number.isNaN(time)) throw invalidArgument('the restore time is not a valid date');
    const what = `time ${source.time.toISOString()}`;
    const found = await volume.lastSequenceAtOrBefore(time);
    if (found !== undefined) return { point: found, what };
    // Every record left in the journal is later, so the answer is the newest freed record. Its
    // time is still known when it was a snapshot or a marker (retention leaves its base
    // snapshot there), and without this a time after a fully freed journal would be "expired".
    const lastFreed = volume.firstSequence - 1;
    const recorded = [...volume.snapshotMeta(), ...volume.markerMeta()].some((r) => r.sequence === lastFreed && r.createdAt <= time);
    if (lastFreed > 0 && recorded) return { point: lastFreed, what };
    // A base at or after the freed records whose last data change is no later than the time
    // holds the volume as it was then: no data changed between that change and the base. The
    // point is the newest record of that stretch known to be no later than the time.
    const base = volume
      .snapshotMeta()
      .find((s) => s.sequence >= lastFreed && s.dataSequence !== undefined && s.dataSequence <= lastFreed && (s.dataTime ?? Infinity) <= time);
    if (lastFreed > 0 && base) {
      const from = base.dataSequence!;
      const known = [...volume.snapshotMeta(), ...volume.markerMeta()].filter((r) => r.sequence > from && r.sequence <= lastFreed && r.createdAt <= time);
      return { point: Math.max(from, ...known.map((r) => r.sequence)), what };
    }
    if (time >= volume.createdAt && volume.firstSequence <= 1) return { point: 0, what };
    if (time < volume.createdAt) throw invalidArgument(`${what} is before volume "${volume.name}" was created (${new Date(volume.createdAt).toISOString()})`);
    throw expiredError(volume, what, 0);
  }

  private checkAreas(volume: Volume, ranges: Extent[]): Extent[] {
    if (ranges.length === 0) throw invalidArgument('an empty list of ranges restores nothing; omit it to restore the whole volume');
    for (const range of ranges) {
      if (!Number.isSafeInteger(range.offset) || !Number.isSafeInteger(range.length) || range.offset < 0 || range.length <= 0) {
        throw invalidArgument(`range ${range.offset}:${range.length} must have a non-negative offset and a positive length`);
      }
      if (range.offset % volume.blockSize !== 0 || range.length % volume.blockSize !== 0) {
        throw invalidArgument(`range ${range.offset}:${range.length} is not aligned to the block size of ${volume.blockSize} bytes`, { volume: volume.name });
      }
      volume.checkRange(range.offset, range.length, `range ${range.offset}:${range.length}`);
    }
    return normalize(ranges);
  }

  // ---- differential information ----------------------------------------------------------

  /** Byte extents changed between snapshot `base` and snapshot `target` (or the live volume). */
  diff(volumeName: string, base: string, target?: string): Extent[] {
    const volume = this.volume(volumeName);
    const from = this.snapshot(volume, base);
    if (target === undefined) return volume.changedExtents(from.sequence);
    const to = this.snapshot(volume, target);
    if (to.sequence < from.sequence) throw invalidArgument(`snapshot "${target}" is older than "${base}"; name the older one as the base`);
    return volume.changedExtents(from.sequence, to.sequence);
  }

  /** Extents ever written, clipped to a range: what a full backup has to read. */
  allocated(volumeName: string, range?: Extent): Extent[] {
    const volume = this.volume(volumeName);
    const all = volume.allocatedExtents();
    return range ? intersect(all, [range]) : all;
  }

  // ---- upkeep ----------------------------------------------------------------------------

  /**
   * Runs upkeep for every volume now (or waits for a run already under way), as each tick of
   * the upkeep timer does, and resolves once it is done; failures are logged, as the timer's
   * are. With `upkeepIntervalMs: 0` this is how a test puts upkeep at a step of its choosing,
   * so that a failing run replays from its seed.
   */
  async upkeep(): Promise<void> {
    await Promise.all([...this.volumes.values()].map((volume) => this.scheduleUpkeep(volume)));
  }

  /** Starts upkeep for a volume unless it is under way; returns the run under way. */
  private scheduleUpkeep(volume: Volume): Promise<void> {
    if (this.closed) return Promise.resolve();
    const running = this.upkeepRunning.get(volume.name);
    if (running) return running;
    const run = (async () => {
      // Writes go on while the image is synced; only retention needs the volume to itself.
      await volume.checkpointInBackground();
      const { maxBytes, maxAgeSeconds } = volume.retention;
      if (maxBytes !== undefined || maxAgeSeconds !== undefined) await volume.exclusive((held) => enforceRetentionLocked(volume, held, this.logger, this.clock()));
    })()
      .catch((err: unknown) => void this.logger.warn('volume upkeep failed', { volume: volume.name, error: String(err) }))
      .finally(() => this.upkeepRunning.delete(volume.name));
    this.upkeepRunning.set(volume.name, run);
    return run;
  }

  /** Approximate bytes the engine holds in memory for differential bitmaps. */
  memoryBytes(): number {
    let sum = 0;
    for (const volume of this.volumes.values()) sum += volume.memoryBytes();
    return sum;
  }
}

/**
 * When the oldest recoverable point was written. It is the volume's birth, or the last data
 * change before the base snapshot that holds it: the state a restore to that point returns.
 */
function earliestRecoverableTime(volume: Volume, earliest: number): number | undefined {
  if (earliest === 0) return volume.createdAt;
  const base = volume.snapshotMeta().find((s) => validFrom(s) === earliest);
  return base ? (base.dataTime ?? base.createdAt) : undefined;
}

function snapshotInfo(volume: Volume, meta: SnapshotMeta): SnapshotInfo {
  return {
    volume: volume.name,
    name: meta.name,
    sequence: meta.sequence,
    createdAt: new Date(meta.createdAt),
    internal: meta.internal,
    method: meta.method,
    size: meta.size,
  };
}

function settingsOf(volume: Volume) {
  return { size: volume.size, blockSize: volume.blockSize, granularity: volume.granularity, retention: { ...volume.retention } };
}

/** The layout of a volume restored from `volume`, with the size and retention asked for. */
function targetSettings(volume: Volume, options: RestoreRequest['targetOptions']) {
  const settings = settingsOf(volume);
  if (options?.size !== undefined) {
    if (!Number.isSafeInteger(options.size) || options.size % volume.blockSize !== 0) {
      throw invalidArgument(`the new volume's size ${options.size} must be a multiple of the block size ${volume.blockSize}`);
    }
    if (options.size < volume.size) {
      throw outOfRange(`the new volume's size ${options.size} is less than the ${volume.size} bytes of its source "${volume.name}"`, { volume: volume.name });
    }
    settings.size = options.size;
  }
  if (options?.retention) {
    validateRetention(options.retention);
    settings.retention = { ...options.retention };
  }
  return settings;
}

function validateRetention(retention: RetentionPolicy): void {
  if (retention.maxBytes !== undefined && (!Number.isSafeInteger(retention.maxBytes) || retention.maxBytes <= 0)) {
    throw invalidArgument('journal retention size must be a positive number of bytes');
  }
  if (retention.maxAgeSeconds !== undefined && (!Number.isFinite(retention.maxAgeSeconds) || retention.maxAgeSeconds <= 0)) {
    throw invalidArgument('journal retention age must be a positive number of seconds');
  }
}

function validateVolumeOptions(options: VolumeOptions) {
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  const granularity = options.granularity ?? Math.max(DEFAULT_GRANULARITY, blockSize);
  if (!isPowerOfTwo(blockSize) || blockSize < 512 || blockSize > 65536) {
    throw invalidArgument(`block size ${blockSize} must be a power of two from 512 to 65536`);
  }
  if (!isPowerOfTwo(granularity) || granularity < blockSize || granularity > 64 * 1024 * 1024) {
    throw invalidArgument(`tracking granularity ${granularity} must be a power of two from the block size (${blockSize}) to 64 MiB`);
  }
  if (!Number.isSafeInteger(options.size) || options.size <= 0) throw invalidArgument(`volume size ${options.size} must be a positive number of bytes`);
  if (options.size % blockSize !== 0) throw invalidArgument(`volume size ${options.size} must be a multiple of the block size ${blockSize}`);
  const retention = options.retention ?? {};
  validateRetention(retention);
  return { size: options.size, blockSize, granularity, retention };
}

/**
 * Runs `fn` holding every volume's lock, taken in name order so that two group operations over
 * the same volumes cannot deadlock. Writes to all of them wait meanwhile: a consistent cut.
 * `fn` gets each volume's token through `heldOf`.
 */
async function exclusiveAll<T>(volumes: Volume[], fn: (heldOf: (volume: Volume) => Held) => Promise<T>): Promise<T> {
  const sorted = [...volumes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const tokens = new Map<Volume, Held>();
  const heldOf = (volume: Volume): Held => {
    const held = tokens.get(volume);
    if (!held) throw new TidemarkError('INTERNAL', `volume "${volume.name}" is not part of this group operation`);
    return held;
  };
  const enter = (index: number): Promise<T> =>
    index === sorted.length
      ? fn(heldOf)
      : sorted[index]!.exclusive((held) => {
          tokens.set(sorted[index]!, held);
          return enter(index + 1);
        });
  return enter(0);
}
