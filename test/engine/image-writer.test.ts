import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ImageWriter, WriteTable } from '../../src/engine/image-writer.js';
import { needing, tool } from '../support/requirements.js';

/** fincore tells how much of a file the page cache holds. */
const withFincore = needing([tool('fincore', 'apt-get install util-linux-extra')]);

function cachedBytes(file: string): number {
  const out = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`fincore failed: ${out.stderr}`);
  return Number(out.stdout.trim());
}

/** A table from rows of [source descriptor or -1 for zeros, source position, length, image position]. */
const table = (...rows: [number, number, number, number][]): WriteTable => {
  const out = new WriteTable();
  for (const [source, from, length, to] of rows) {
    if (source < 0) out.zeros(length, to);
    else out.copy(source, from, length, to);
  }
  return out;
};

describe('image writer thread', () => {
  let dir: string;
  let writer: ImageWriter;
  let journal: fs.FileHandle;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-image-writer-'));
    writer = new ImageWriter();
    await fs.writeFile(path.join(dir, 'journal'), 'xxAAAAxxBBBBBBxxplainxxlater');
    journal = await fs.open(path.join(dir, 'journal'), 'r');
  });
  afterEach(async () => {
    await writer.close();
    await journal.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('copies a batch from the journal in order, so overlapping writes land oldest first', async () => {
    const file = path.join(dir, 'image');
    const handle = await fs.open(file, 'w+');
    try {
      await handle.truncate(64);
      await writer.write(handle.fd, table([journal.fd, 2, 4, 0], [journal.fd, 8, 6, 2], [journal.fd, 16, 5, 6], [-1, 0, 2, 3], [journal.fd, 16, 0, 40]));
      await writer.write(handle.fd, table([journal.fd, 23, 5, 20]));
      await writer.write(handle.fd, new WriteTable());
      const bytes = await fs.readFile(file);
      expect(bytes.subarray(0, 11).toString('latin1')).toBe('AAB\0\0Bplain');
      expect(bytes.subarray(20, 25).toString()).toBe('later');
      expect(bytes.length).toBe(64);
    } finally {
      await handle.close();
    }
  });

  it('copies large writes in the kernel and runs of small ones through one read each, whatever their number', async () => {
    // 40 records of 60 KiB, a 40-byte header apart as in a segment: more than one read's
    // buffer, so the run of small copies is split; then one record larger than a small copy.
    const record = 60 * 1024;
    const journalBytes = Buffer.alloc(40 * (record + 40) + 2 * 1024 * 1024);
    for (let i = 0; i < journalBytes.length; i += 512) journalBytes.write(`at ${i}`, i);
    await fs.writeFile(path.join(dir, 'segment'), journalBytes);
    const segment = await fs.open(path.join(dir, 'segment'), 'r');
    const handle = await fs.open(path.join(dir, 'image'), 'w+');
    const rows: [number, number, number, number][] = [];
    const expected = Buffer.alloc(64 * 1024 * 1024);
    // Written to the image back to front, so that the order of the rows is what places them.
    for (let i = 0; i < 40; i++) rows.push([segment.fd, 40 + i * (record + 40), record, (39 - i) * record]);
    rows.push([segment.fd, 40 * (record + 40), 2 * 1024 * 1024, 50 * 1024 * 1024]);
    for (const [, from, length, to] of rows) journalBytes.copy(expected, to, from, from + length);
    try {
      await writer.write(handle.fd, table(...rows));
    } finally {
      await handle.close();
      await segment.close();
    }
    const bytes = await fs.readFile(path.join(dir, 'image'));
    expect(bytes.length).toBe(52 * 1024 * 1024);
    expect(bytes.equals(expected.subarray(0, bytes.length))).toBe(true);
  });

  it('copies from another filesystem, where copy_file_range refuses, by reading and writing', async () => {
    const other = await fs.mkdtemp('/dev/shm/tidemark-image-writer-');
    const big = Buffer.alloc(3 * 1024 * 1024 + 5);
    for (let i = 0; i < big.length; i += 4096) big.write(`block ${i}`, i);
    await fs.writeFile(path.join(other, 'journal'), big);
    const source = await fs.open(path.join(other, 'journal'), 'r');
    const handle = await fs.open(path.join(dir, 'image'), 'w+');
    try {
      await writer.write(handle.fd, table([source.fd, 1, big.length - 1, 7]));
      await writer.write(handle.fd, table([journal.fd, 2, 4, 0]));
    } finally {
      await handle.close();
      await source.close();
      await fs.rm(other, { recursive: true, force: true });
    }
    const bytes = await fs.readFile(path.join(dir, 'image'));
    expect(bytes.subarray(0, 4).toString()).toBe('AAAA');
    expect(bytes.subarray(7).equals(big.subarray(1))).toBe(true);
  });

  withFincore.it('drops the journal bytes it copied from the page cache, and only those', async () => {
    const MiB = 1024 * 1024;
    const file = path.join(dir, 'segment');
    const bytes = Buffer.alloc(8 * MiB);
    for (let i = 0; i < bytes.length; i += 4096) bytes.write(`page ${i / 4096}`, i);
    const segment = await fs.open(file, 'w+');
    const handle = await fs.open(path.join(dir, 'image'), 'w+');
    try {
      await segment.write(bytes, 0, bytes.length, 0);
      // Durable, as the applier's sources are: the kernel drops only clean pages.
      await segment.datasync();
      expect(cachedBytes(file)).toBe(8 * MiB);
      // Records a header apart, small and large ones, from 1 MiB + 40 to about 6 MiB.
      const rows: [number, number, number, number][] = [];
      let from = MiB + 40;
      for (const length of [4096, 60 * 1024, 2 * MiB, 4096, 3 * MiB + 1000]) {
        rows.push([segment.fd, from, length, from]);
        from += length + 40;
      }
      const end = from - 40;
      await writer.write(handle.fd, table(...rows));
      // The segment's pages before the last byte copied are gone, but for the page (or large
      // folio, up to 2 MiB) that holds it; the pages after it stay.
      const cached = cachedBytes(file);
      expect(cached).toBeGreaterThanOrEqual(8 * MiB - Math.ceil(end / 4096) * 4096);
      expect(cached).toBeLessThanOrEqual(8 * MiB - end + 2 * MiB);
      const image = await fs.readFile(path.join(dir, 'image'));
      for (const [, at, length] of rows) expect(image.subarray(at, at + length).equals(bytes.subarray(at, at + length))).toBe(true);
    } finally {
      await handle.close();
      await segment.close();
    }
  });

  it('writes zero runs longer than its zero buffer', async () => {
    const file = path.join(dir, 'image');
    await fs.writeFile(file, Buffer.alloc(3 * 1024 * 1024, 0xff));
    const handle = await fs.open(file, 'r+');
    try {
      await writer.write(handle.fd, table([-1, 0, 2.5 * 1024 * 1024, 1]));
    } finally {
      await handle.close();
    }
    const bytes = await fs.readFile(file);
    expect(bytes[0]).toBe(0xff);
    expect(bytes.subarray(1, 1 + 2.5 * 1024 * 1024).every((b) => b === 0)).toBe(true);
    expect(bytes[1 + 2.5 * 1024 * 1024]).toBe(0xff);
  });

  it('rejects with the errno code of a failed write, and writes the next batch', async () => {
    const file = path.join(dir, 'image');
    await fs.writeFile(file, 'original');
    const readOnly = await fs.open(file, 'r');
    const writable = await fs.open(file, 'r+');
    try {
      await expect(writer.write(readOnly.fd, table([journal.fd, 0, 7, 0]))).rejects.toMatchObject({ code: 'EBADF' });
      await expect(writer.write(readOnly.fd, table([-1, 0, 7, 0]))).rejects.toMatchObject({ code: 'EBADF' });
      await writer.write(writable.fd, table([journal.fd, 2, 4, 0]));
    } finally {
      await readOnly.close();
      await writable.close();
    }
    expect(await fs.readFile(file, 'utf8')).toBe('AAAAinal');
  });

  it('fails, naming the place, when the journal ends before the data it should hold', async () => {
    const handle = await fs.open(path.join(dir, 'image'), 'w+');
    try {
      await expect(writer.write(handle.fd, table([journal.fd, 20, 100, 0]))).rejects.toMatchObject({ code: 'EIO', message: expect.stringContaining('the journal ends at byte 28') });
    } finally {
      await handle.close();
    }
  });

  it('does not keep a process alive once its writes are answered', () => {
    const module = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../src/engine/image-writer.js');
    const file = path.join(dir, 'image');
    const script = `
      import * as fs from 'node:fs/promises';
      const { imageWriter } = await import(${JSON.stringify(module)});
      const handle = await fs.open(${JSON.stringify(file)}, 'w');
      const { WriteTable } = await import(${JSON.stringify(module)});
      const table = new WriteTable(); table.zeros(5, 0);
      await imageWriter.write(handle.fd, table);
      await handle.close();
      console.log('written');
    `;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect({ status: child.status, signal: child.signal, stdout: child.stdout.trim(), stderr: child.stderr }).toEqual({ status: 0, signal: null, stdout: 'written', stderr: '' });
  });
});
