/**
 * `tidemark serve --metrics-address`: Prometheus metrics and the health endpoint the chart's
 * liveness probe uses, scraped over HTTP from a real daemon after real traffic.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { CMD, TestClient } from '../nbd/fixtures/nbd-client.js';
import { blocksShareable } from '../../src/engine/image.js';
import { sendFileAvailable } from '../../src/util/send-file.js';
import { takesDirectIo } from '../support/direct-io.js';
import { sample } from '../support/metrics.js';
import { DaemonProcess, pattern, tidemark } from './harness.js';

const MiB = 1024 * 1024;
let dir: string;
let store: string;
let daemon: DaemonProcess;
let base: string;

const tm = (args: string[], options: { input?: Buffer | string } = {}) => tidemark(['--store', store, ...args], options);

/** Value of one sample line, e.g. `name{volume="v"}`; undefined when absent. */
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-metrics-'));
  store = path.join(dir, 'store');
  daemon = await DaemonProcess.start(store, ['--metrics-address', '127.0.0.1:0', '--reconcilers', 'off']);
  const listening = daemon.logs.split('\n').find((l) => l.includes('"message":"metrics listening"'));
  base = `http://${(JSON.parse(listening!) as { address: string }).address}`;
});

afterAll(async () => {
  await daemon?.stop();
  await fs.rm(dir, { recursive: true, force: true });
});

describe('metrics and health', () => {
  it('reports healthy with every part up, as JSON', async () => {
    const response = await fetch(`${base}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true, checks: { engine: true, nbd: true, csi: true } });
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(405);
  });

  it('counts NBD traffic, journal syncs and volume state, under Prometheus names', async () => {
    expect((await tm(['volume', 'create', 'm1', '--size', '8Mi'])).code).toBe(0);
    const { client } = await TestClient.open(path.join(store, 'nbd.sock'), 'm1');
    try {
      expect((await client.write(0, pattern(MiB, 1))).error).toBe(0);
      expect((await client.request(CMD.flush)).error).toBe(0);
      expect((await client.readAt(0, 4096)).data?.equals(pattern(MiB, 1).subarray(0, 4096))).toBe(true);
      const response = await fetch(`${base}/metrics`);
      expect(response.headers.get('content-type')).toMatch(/text\/plain/);
      const text = await response.text();
      expect(sample(text, 'tidemark_volume_written_bytes_total{volume="m1"}')).toBe(MiB);
      expect(sample(text, 'tidemark_volume_read_bytes_total{volume="m1"}')).toBe(4096);
      expect(sample(text, 'tidemark_volume_operations_total{volume="m1",operation="flush"}')).toBe(1);
      expect(sample(text, 'tidemark_nbd_connections')).toBe(1);
      expect(sample(text, 'tidemark_volume_size_bytes{volume="m1"}')).toBe(8 * MiB);
      expect(sample(text, 'tidemark_journal_bytes{volume="m1"}')).toBeGreaterThan(MiB);
      expect(sample(text, 'tidemark_journal_segments{volume="m1"}')).toBeGreaterThanOrEqual(1);
      // The 1 MiB write is one batch large enough to go past the page cache, where it can.
      const direct = sample(text, 'tidemark_journal_direct_written_bytes{volume="m1"}');
      if ((await takesDirectIo(store)) && !(await blocksShareable(store))) expect(direct).toBeGreaterThan(MiB);
      else expect(direct).toBe(0);
      expect(sample(text, 'tidemark_journal_sync_duration_seconds_count')).toBeGreaterThanOrEqual(1);
      expect(sample(text, 'tidemark_volume_recovery_window_start_seconds{volume="m1"}')).toBeGreaterThan(1_700_000_000);
      // Once the image holds the data (a snapshot catches it up), a read is sent from the
      // file where the kernel allows it, and counted once either way.
      expect((await tm(['snapshot', 'create', 'm1', 'applied'])).code).toBe(0);
      expect((await client.readAt(4096, 64 * 1024)).data?.equals(pattern(MiB, 1).subarray(4096, 4096 + 64 * 1024))).toBe(true);
      const after = await (await fetch(`${base}/metrics`)).text();
      expect(sample(after, 'tidemark_volume_read_bytes_total{volume="m1"}')).toBe(4096 + 64 * 1024);
      expect(sample(after, 'tidemark_nbd_read_bytes_sent_from_file_total')).toBe(sendFileAvailable() ? 64 * 1024 : 0);
    } finally {
      client.close();
    }
  });

  it('times restores by method', async () => {
    expect((await tm(['marker', 'create', 'before', '--volume', 'm1'])).code).toBe(0);
    expect((await tm(['volume', 'write', 'm1', '--offset', '0'], { input: pattern(MiB, 2) })).code).toBe(0);
    expect((await tm(['restore', 'm1', '--marker', 'before'])).code).toBe(0);
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(sample(text, 'tidemark_restore_duration_seconds_count{method="rewind"}')).toBe(1);
    expect(sample(text, 'tidemark_volume_markers{volume="m1"}')).toBe(1);
  });

  it('refuses a malformed address with exit 2', async () => {
    const result = await tidemark(['serve', '--store', path.join(dir, 'other'), '--metrics-address', 'nowhere']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--metrics-address "nowhere" must be PORT, :PORT or HOST:PORT/);
  });
});
