/**
 * Damage to a closed segment below the checkpoint loses records the image already holds. The
 * journal must then go on numbering after the checkpoint: handing a number out again would
 * give two records one sequence, and markers, snapshots and the checkpoint already count it.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Engine } from '../../src/engine/index.js';
import { tempDirEach } from '../support/temp-dir.js';

const KiB = 1024;

describe('a hole below the checkpoint', () => {
  let store: string;
  tempDirEach('hole', (made) => (store = made));

  it('never hands a sequence number out again, keeps the data, and expires the points before the hole', async () => {
    const open = () => Engine.open({ store, upkeepIntervalMs: 0, segmentSize: 64 * KiB });
    let engine = await open();
    await engine.createVolume('v', { size: 1024 * KiB });
    for (let i = 0; i < 8; i++) await engine.write('v', i * 16 * KiB, Buffer.alloc(16 * KiB, i + 1));
    await engine.createMarker('m', ['v']);
    for (let i = 8; i < 12; i++) await engine.write('v', i * 16 * KiB, Buffer.alloc(16 * KiB, i + 1));
    const last = engine.volumeInfo('v').sequence;
    await engine.close();

    // The first closed segment loses its tail, below the checkpoint: its size no longer
    // matches the checkpoint's summary, so start-up reads it and cuts it.
    const journal = path.join(store, 'volumes', 'v', 'journal');
    const segments = (await fs.readdir(journal)).sort();
    expect(segments.length).toBeGreaterThan(3);
    await fs.truncate(path.join(journal, segments[0]!), 100);

    engine = await open();
    try {
      expect(engine.volumeInfo('v').sequence).toBe(last);
      expect(await engine.write('v', 0, Buffer.alloc(4 * KiB, 0xee))).toBe(last + 1);
      for (let i = 1; i < 12; i++) expect((await engine.read('v', i * 16 * KiB, 1))[0]).toBe(i + 1);
      // The marker's history runs through the hole: refused, never restored wrongly.
      expect(engine.listMarkers('v')[0]!.expired).toBe(true);
      await expect(engine.restore({ volume: 'v', source: { marker: 'm' } })).rejects.toMatchObject({ code: 'EXPIRED' });
      await engine.createMarker('after', ['v']);
    } finally {
      await engine.close();
    }

    // And again after a restart: the hole is allowed, the records after it are kept.
    engine = await open();
    try {
      expect(engine.volumeInfo('v').sequence).toBe(last + 2);
      expect((await engine.read('v', 0, 1))[0]).toBe(0xee);
      expect(engine.listMarkers('v').find((m) => m.name === 'after')!.sequence).toBe(last + 2);
      expect(await engine.write('v', 0, Buffer.alloc(4 * KiB, 0xef))).toBe(last + 3);
    } finally {
      await engine.close();
    }
  });
});
