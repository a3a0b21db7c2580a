import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/engine/index.js';

describe('volume resize', () => {
  let store: string;
  let engine: Engine;

  beforeEach(async () => {
    store = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-resize-'));
    engine = await Engine.open({ store, upkeepIntervalMs: 0 });
  });

  afterEach(async () => {
    await engine.close();
    await fs.rm(store, { recursive: true, force: true });
  });

  it('grows a volume, keeps its data and reads the new bytes as zeros', async () => {
    await engine.createVolume('v', { size: 64 * 1024, blockSize: 4096 });
    await engine.write('v', 0, Buffer.alloc(4096, 7));
    const info = await engine.resizeVolume('v', 128 * 1024);
    expect(info.size).toBe(128 * 1024);
    expect((await engine.read('v', 0, 4096)).equals(Buffer.alloc(4096, 7))).toBe(true);
    expect((await engine.read('v', 64 * 1024, 64 * 1024)).equals(Buffer.alloc(64 * 1024))).toBe(true);
    await engine.write('v', 120 * 1024, Buffer.alloc(4096, 9));
    await engine.close();
    engine = await Engine.open({ store, upkeepIntervalMs: 0 });
    expect(engine.volumeInfo('v').size).toBe(128 * 1024);
    expect((await engine.read('v', 120 * 1024, 4096)).equals(Buffer.alloc(4096, 9))).toBe(true);
  });

  it('refuses to shrink or to take a size off the block grid', async () => {
    await engine.createVolume('v', { size: 64 * 1024, blockSize: 4096 });
    await expect(engine.resizeVolume('v', 32 * 1024)).rejects.toMatchObject({ code: 'OUT_OF_RANGE' });
    await expect(engine.resizeVolume('v', 64 * 1024 + 100)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(engine.volumeInfo('v').size).toBe(64 * 1024);
  });

  it('rewinds across a resize: bytes written after the marker in the grown area return to zero', async () => {
    await engine.createVolume('v', { size: 64 * 1024, blockSize: 4096 });
    await engine.write('v', 0, Buffer.alloc(4096, 1));
    await engine.createSnapshot('v', 's');
    await engine.createMarker('m', ['v']);
    await engine.resizeVolume('v', 128 * 1024);
    await engine.write('v', 0, Buffer.alloc(4096, 2));
    await engine.write('v', 100 * 1024, Buffer.alloc(4096, 3));
    await engine.restore({ volume: 'v', source: { marker: 'm' } });
    expect((await engine.read('v', 0, 4096)).equals(Buffer.alloc(4096, 1))).toBe(true);
    expect((await engine.read('v', 100 * 1024, 4096)).equals(Buffer.alloc(4096))).toBe(true);
    expect(engine.volumeInfo('v').size).toBe(128 * 1024);
  });
});
