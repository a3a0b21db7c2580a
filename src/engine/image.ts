import * as fs from 'node:fs/promises';
import { outOfRange } from '../util/errors.js';
import { punchHole, writeFully } from '../util/files.js';
import { formatSize } from '../util/sizes.js';
import { RecordType, type JournalRecord } from './record.js';

/** The raw volume, a sparse file in the volume's directory. */
export const IMAGE_FILE = 'image';
/** Zeros of at least this length punch a hole instead of writing zeros. */
const PUNCH_THRESHOLD = 1024 * 1024;
const ZEROS = Buffer.alloc(PUNCH_THRESHOLD);

/** Puts one data record into the image; other records do not touch it. */
export async function applyToImage(image: fs.FileHandle, imagePath: string, record: JournalRecord): Promise<void> {
  switch (record.type) {
    case RecordType.Write:
      await writeFully(image, record.data, record.offset);
      return;
    case RecordType.Zero:
    case RecordType.Trim:
      await zeroImage(image, imagePath, record.offset, record.length);
      return;
    default:
      return;
  }
}

/** Zeros a range of the image: a hole when it is long (see `punchesHole`), written zeros otherwise. */
export async function zeroImage(image: fs.FileHandle, imagePath: string, offset: number, length: number): Promise<void> {
  if (punchesHole(length)) await punchHole(image, imagePath, offset, length);
  else await writeFully(image, ZEROS.subarray(0, length), offset);
}

/** Whether zeroing this many bytes frees them with a hole rather than writing zeros. */
export function punchesHole(length: number): boolean {
  return length >= PUNCH_THRESHOLD;
}

/**
 * Sets the image's size, turning a size the filesystem cannot hold in one file (EFBIG, or
 * EINVAL from some filesystems) into an error that names the largest size it can. `from`
 * is the image's size now, which is known to fit and is kept on failure.
 */
export async function growImage(image: fs.FileHandle, size: number, blockSize: number, dir: string, from = 0): Promise<void> {
  try {
    await image.truncate(size);
    return;
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).code;
    if (errno !== 'EFBIG' && errno !== 'EINVAL') throw err;
  }
  // The limit depends on the filesystem and its block size; probing with sparse truncates
  // (some forty of them, never below `from`, so no data goes) finds it exactly.
  let fits = from;
  let refused = size;
  while (refused - fits > blockSize) {
    const middle = Math.floor((fits + refused) / 2 / blockSize) * blockSize;
    if (middle <= fits) break;
    if (await image.truncate(middle).then(() => true, () => false)) fits = middle;
    else refused = middle;
  }
  await image.truncate(from).catch(() => undefined);
  const stats = await fs.statfs(dir).catch(() => undefined);
  const filesystem = stats ? (FILESYSTEMS[stats.type] ?? `type 0x${stats.type.toString(16)}`) : 'unknown type';
  throw outOfRange(`volume size ${formatSize(size)} (${size} bytes) is more than the store's filesystem (${filesystem}) allows for one file: at most ${formatSize(fits)} (${fits} bytes)`, {
    size,
    limit: fits,
  });
}

/**
 * Whether the image can share blocks with the journal on this filesystem, so that the journal
 * should align large writes (Journal.alignLargeWrites): XFS (reflink is the default of
 * current mkfs.xfs) and btrfs. TIDEMARK_JOURNAL_ALIGN=always|never decides instead, for tests
 * and for a store where the guess is wrong.
 */
export async function blocksShareable(dir: string): Promise<boolean> {
  const forced = process.env.TIDEMARK_JOURNAL_ALIGN;
  if (forced === 'always' || forced === 'never') return forced === 'always';
  const stats = await fs.statfs(dir).catch(() => undefined);
  const filesystem = stats && FILESYSTEMS[stats.type];
  return filesystem === 'xfs' || filesystem === 'btrfs';
}

/** statfs magic numbers of filesystems a store is likely to sit on, for messages. */
const FILESYSTEMS: Record<number, string> = {
  0xef53: 'ext4',
  0x58465342: 'xfs',
  0x9123683e: 'btrfs',
  0x01021994: 'tmpfs',
  0x2fc12fc1: 'zfs',
  0x6969: 'nfs',
  0x65735546: 'fuse',
};
