/**
 * `tidemark serve` as one daemon: the admin API, the NBD data path (unix socket, and TCP on
 * loopback when asked) and the CSI services, all over one engine. Real clients only: the
 * tidemark command, nbdinfo, a raw NBD client and a csi.v1 gRPC client.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { csiClientConstructor } from '../../src/csi/index.js';
import { TestClient } from '../nbd/fixtures/nbd-client.js';
import { requireTools, run } from '../nbd/fixtures/harness.js';
import { DaemonProcess, pattern, tidemark } from './harness.js';

const MiB = 1024 * 1024;
let dir: string;
let store: string;
let daemon: DaemonProcess | undefined;

const tm = (args: string[], options: { input?: Buffer | string } = {}) => tidemark(['--store', store, ...args], options);

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-serve-'));
  store = path.join(dir, 'store');
  daemon = await DaemonProcess.start(store, ['--nbd-tcp', '0', '--node-id', 'node-7']);
});

afterAll(async () => {
  await daemon?.stop();
  await fs.rm(dir, { recursive: true, force: true });
});

describe('tidemark serve', () => {
  it('serves every volume over NBD on nbd.sock in the store', async () => {
    if (!requireTools('nbdinfo')) return;
    expect((await tm(['volume', 'create', 'disk', '--size', '8Mi'])).code).toBe(0);
    expect((await tm(['volume', 'write', 'disk', '--offset', '1048576'], { input: pattern(MiB, 3) })).code).toBe(0);
    const listed = await run('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${path.join(store, 'nbd.sock')}`]);
    expect(listed.code).toBe(0);
    const exports = (JSON.parse(listed.stdout) as { exports: { 'export-name': string; 'export-size': number }[] }).exports;
    expect(exports.map((e) => [e['export-name'], e['export-size']])).toEqual([['disk', 8 * MiB]]);
    // What the CLI wrote is what NBD reads.
    const { client } = await TestClient.open(path.join(store, 'nbd.sock'), 'disk');
    try {
      const reply = await client.readAt(MiB, MiB);
      expect(reply.error).toBe(0);
      expect(reply.data?.equals(pattern(MiB, 3))).toBe(true);
    } finally {
      client.close();
    }
  });

  it('listens on TCP only on loopback when given a port alone', async () => {
    const line = daemon!.logs.split('\n').find((l) => l.includes('"nbd server listening"') && l.includes('"port"'));
    expect(line).toBeDefined();
    const { host, port } = JSON.parse(line!) as { host: string; port: number };
    expect(host).toBe('127.0.0.1');
    const { client, size } = await TestClient.open({ host: '127.0.0.1', port }, 'disk');
    client.close();
    expect(size).toBe(8 * MiB);
  });

  it('marks a volume with an NBD client in use, so an in-place restore is refused until it leaves', async () => {
    expect((await tm(['snapshot', 'create', 'disk', 'base'])).code).toBe(0);
    const { client } = await TestClient.open(path.join(store, 'nbd.sock'), 'disk');
    const refused = await tm(['restore', 'disk', '--snapshot', 'base']);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(/in use|busy|nbd/i);
    client.close();
    let done = await tm(['restore', 'disk', '--snapshot', 'base']);
    // The server lets go of the volume once the connection's requests are finished.
    for (let i = 0; i < 50 && done.code === 5; i++) {
      await new Promise((r) => setTimeout(r, 100));
      done = await tm(['restore', 'disk', '--snapshot', 'base']);
    }
    expect(done.code).toBe(0);
  });

  it('serves the CSI services on csi.sock, ready once the data path is up', async () => {
    const Identity = csiClientConstructor('Identity');
    const Node = csiClientConstructor('Node');
    const socket = `unix:${path.join(store, 'csi.sock')}`;
    const identity = new Identity(socket, grpc.credentials.createInsecure());
    const node = new Node(socket, grpc.credentials.createInsecure());
    type Call = (req: object, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void;
    const call = (client: grpc.Client, method: string) =>
      new Promise<Record<string, unknown>>((resolve, reject) => ((client as unknown as Record<string, Call>)[method]!).call(client, {}, (err, res) => (err ? reject(err) : resolve(res))));
    try {
      expect(await call(identity, 'Probe')).toEqual({ ready: { value: true } });
      expect((await call(node, 'NodeGetInfo')).nodeId).toBe('node-7');
    } finally {
      identity.close();
      node.close();
    }
  });

  it('refuses bad data-path options with exit 2 before touching the store', async () => {
    const other = path.join(dir, 'other');
    const tcp = await tidemark(['serve', '--store', other, '--nbd-tcp', 'localhost:99999']);
    expect(tcp.code).toBe(2);
    expect(tcp.stderr).toMatch(/--nbd-tcp/);
    const attach = await tidemark(['serve', '--store', other, '--attach', 'iscsi']);
    expect(attach.code).toBe(2);
    expect(attach.stderr).toMatch(/--attach/);
    await expect(fs.stat(other)).rejects.toThrow(/ENOENT/);
  });
});
