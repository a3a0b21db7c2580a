/**
 * A connection never outlives the volume it opened: deleting a volume by force ends its
 * connections, so that nothing they send can reach a new volume that takes the name.
 */
import { TestClient } from './fixtures/nbd-client.js';
import { MiB, patternBytes, startHarness, type Harness } from './fixtures/harness.js';

let h: Harness;

beforeEach(async () => {
  h = await startHarness();
});

afterEach(async () => {
  await h.stop();
});

test('a forced delete ends the connections of the volume, and a new volume of its name gets nothing from them', async () => {
  await h.engine.createVolume('z', { size: 4 * MiB });
  const { client } = await TestClient.open(h.socket, 'z');
  expect((await client.write(0, patternBytes(4096, 1))).error).toBe(0);
  expect(h.engine.volumeInfo('z').holders).toHaveLength(1);

  await h.engine.deleteVolume('z', { force: true });
  await h.engine.createVolume('z', { size: 4 * MiB });
  // The old connection's next write must not land in the new volume.
  const late = await client.write(0, patternBytes(4096, 2)).then(
    (reply) => `answered with error ${reply.error}`,
    () => 'refused: connection closed',
  );
  expect(late).toBe('refused: connection closed');
  await client.closed;
  expect((await h.engine.read('z', 0, 4096)).equals(Buffer.alloc(4096))).toBe(true);
  expect(h.engine.volumeInfo('z').holders).toEqual([]);

  // New connections to the new volume work as usual.
  const { client: fresh } = await TestClient.open(h.socket, 'z');
  expect((await fresh.write(0, patternBytes(4096, 3))).error).toBe(0);
  expect((await h.engine.read('z', 0, 4096)).equals(patternBytes(4096, 3))).toBe(true);
  expect(h.engine.volumeInfo('z').holders).toHaveLength(1);
  fresh.close();
  await h.waitUnheld('z');
});
