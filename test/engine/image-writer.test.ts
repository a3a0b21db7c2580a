import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ImageWriter } from '../../src/engine/image-writer.js';
import { RecordType, type JournalRecord } from '../../src/engine/record.js';

const sharedBytes = (text: string): Buffer => {
  const buffer = Buffer.from(new SharedArrayBuffer(text.length));
  buffer.write(text);
  return buffer;
};
const write = (offset: number, data: Buffer, sequence = 1): JournalRecord => ({ type: RecordType.Write, offset, data, sequence, time: 0 }) as JournalRecord;
const zero = (offset: number, length: number): JournalRecord => ({ type: RecordType.Zero, offset, length, sequence: 1, time: 0 }) as JournalRecord;

describe('image writer thread', () => {
  let dir: string;
  let writer: ImageWriter;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-image-writer-'));
    writer = new ImageWriter();
  });
  afterEach(async () => {
    await writer.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('writes a batch in order, so overlapping records land oldest first, from shared and plain memory', async () => {
    const file = path.join(dir, 'image');
    const handle = await fs.open(file, 'w+');
    try {
      await handle.truncate(64);
      const journalBuffer = sharedBytes('xxAAAAxxBBBBBBxx');
      await writer.write(handle.fd, [
        write(0, journalBuffer.subarray(2, 6)),
        write(2, journalBuffer.subarray(8, 14)),
        write(6, Buffer.from('plain')),
        { type: RecordType.Marker, sequence: 4, time: 0, name: 'm', group: undefined } as unknown as JournalRecord,
        zero(3, 2),
        write(40, Buffer.alloc(0)),
      ]);
      await writer.write(handle.fd, [write(20, sharedBytes('later'))]);
      const bytes = await fs.readFile(file);
      expect(bytes.subarray(0, 11).toString('latin1')).toBe('AAB\0\0Bplain');
      expect(bytes.subarray(20, 25).toString()).toBe('later');
      expect(bytes.length).toBe(64);
    } finally {
      await handle.close();
    }
  });

  it('writes zero runs longer than its zero buffer', async () => {
    const file = path.join(dir, 'image');
    await fs.writeFile(file, Buffer.alloc(3 * 1024 * 1024, 0xff));
    const handle = await fs.open(file, 'r+');
    try {
      await writer.write(handle.fd, [zero(1, 2.5 * 1024 * 1024)]);
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
      await expect(writer.write(readOnly.fd, [write(0, sharedBytes('changed'))])).rejects.toMatchObject({ code: 'EBADF' });
      await writer.write(writable.fd, [write(0, sharedBytes('ORIG'))]);
    } finally {
      await readOnly.close();
      await writable.close();
    }
    expect(await fs.readFile(file, 'utf8')).toBe('ORIGinal');
  });

  it('does not keep a process alive once its writes are answered', () => {
    const module = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../src/engine/image-writer.js');
    const file = path.join(dir, 'image');
    const script = `
      import * as fs from 'node:fs/promises';
      const { imageWriter } = await import(${JSON.stringify(module)});
      const handle = await fs.open(${JSON.stringify(file)}, 'w');
      const data = Buffer.from(new SharedArrayBuffer(5)); data.write('hello');
      await imageWriter.write(handle.fd, [{ type: 1, offset: 0, data, sequence: 1, time: 0 }]);
      await handle.close();
      console.log('written');
    `;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect({ status: child.status, signal: child.signal, stdout: child.stdout.trim(), stderr: child.stderr }).toEqual({ status: 0, signal: null, stdout: 'written', stderr: '' });
  });
});
