import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { classifyError } from '../util/errors.js';
import { makePrivateDir, writeFileAtomic } from '../util/files.js';
import type { Logger } from '../util/log.js';
import type { StringMap } from './messages.js';
import type { FsType } from './params.js';

/**
 * What CSI knows about a volume beyond the engine's own facts: the name it was created
 * under, its filesystem type (volume_context must never change), and the request it was
 * created from, so that a retried CreateVolume can be told apart from a conflicting one.
 */
export interface VolumeRecord {
  version: 1;
  csiName: string;
  volume: string;
  fsType: FsType;
  /** Creation parameters in canonical spelling (see params.ts). */
  parameters: StringMap;
  mutableParameters: StringMap;
  contentSource?: { snapshotId: string } | { volumeId: string };
  createdAt: string;
}

/** A group snapshot exists once its record does: the record is written after the cut is verified. */
export interface GroupRecord {
  version: 1;
  csiName: string;
  group: string;
  /** Engine names of the member volumes, sorted. */
  volumes: string[];
  /** When the consistent cut was recorded. */
  createdAt: string;
}

type Kind = 'volumes' | 'groups';

/**
 * Records live in STORE/csi/{volumes,groups}/NAME.json, beside (not inside) the engine's
 * volumes, each written atomically. A volume record is written before its volume is created
 * and removed after it is deleted, so a record without a volume is harmless debris (ignored,
 * and replaced by the next CreateVolume of that name), and a volume without a record is one
 * made by other means (the CLI, a restore) and gets defaults.
 */
export class CsiRecords {
  private readonly volumes = new Map<string, VolumeRecord>();
  private readonly groups = new Map<string, GroupRecord>();

  private constructor(
    readonly dir: string,
    private readonly logger: Logger,
  ) {}

  static async open(dir: string, logger: Logger): Promise<CsiRecords> {
    const records = new CsiRecords(dir, logger);
    await records.load('volumes', (r: VolumeRecord) => records.volumes.set(r.volume, r));
    await records.load('groups', (r: GroupRecord) => records.groups.set(r.group, r));
    return records;
  }

  private async load<T extends { version: number }>(kind: Kind, add: (record: T) => void): Promise<void> {
    const dir = path.join(this.dir, kind);
    try {
      await makePrivateDir(dir);
      for (const entry of await fs.readdir(dir)) {
        if (!entry.endsWith('.json')) continue;
        try {
          const record = JSON.parse(await fs.readFile(path.join(dir, entry), 'utf8')) as T;
          if (record.version === 1) add(record);
        } catch (err) {
          this.logger.warn('ignoring an unreadable CSI record', { file: path.join(dir, entry), error: String(err) });
        }
      }
    } catch (err) {
      throw classifyError(err, `reading CSI records in ${dir}`);
    }
  }

  volumeNames(): string[] {
    return [...this.volumes.keys()];
  }

  volume(name: string): VolumeRecord | undefined {
    return this.volumes.get(name);
  }

  async putVolume(record: VolumeRecord): Promise<void> {
    await this.write('volumes', record.volume, record);
    this.volumes.set(record.volume, record);
  }

  async deleteVolume(name: string): Promise<void> {
    await this.remove('volumes', name);
    this.volumes.delete(name);
  }

  group(name: string): GroupRecord | undefined {
    return this.groups.get(name);
  }

  async putGroup(record: GroupRecord): Promise<void> {
    await this.write('groups', record.group, record);
    this.groups.set(record.group, record);
  }

  async deleteGroup(name: string): Promise<void> {
    await this.remove('groups', name);
    this.groups.delete(name);
  }

  private async write(kind: Kind, name: string, record: object): Promise<void> {
    const file = path.join(this.dir, kind, `${name}.json`);
    try {
      await writeFileAtomic(file, JSON.stringify(record, null, 2) + '\n');
    } catch (err) {
      throw classifyError(err, `writing CSI record ${file}`);
    }
  }

  private async remove(kind: Kind, name: string): Promise<void> {
    const file = path.join(this.dir, kind, `${name}.json`);
    try {
      await fs.rm(file, { force: true });
    } catch (err) {
      throw classifyError(err, `removing CSI record ${file}`);
    }
  }
}
