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
import { run } from '../nbd/fixtures/harness.js';
import { needing, tool } from '../support/requirements.js';
import { DaemonProcess, pattern, tidemark } from './harness.js';

const MiB = 1024 * 1024;
const withNbdinfo = needing([tool('nbdinfo')]);
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
  withNbdinfo.it('serves every volume over NBD on nbd.sock in the store', async () => {
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

describe('tidemark serve: store permissions', () => {
  interface Entry {
    path: string;
    kind: 'dir' | 'file' | 'socket';
    mode: number;
  }

  async function entries(root: string): Promise<Entry[]> {
    const out: Entry[] = [];
    const visit = async (file: string): Promise<void> => {
      const stat = await fs.lstat(file);
      const kind = stat.isDirectory() ? 'dir' : stat.isSocket() ? 'socket' : 'file';
      out.push({ path: path.relative(root, file) || '.', kind, mode: stat.mode & 0o777 });
      if (kind === 'dir') for (const name of await fs.readdir(file)) await visit(path.join(file, name));
    };
    await visit(root);
    return out;
  }

  /** Everything that is not the daemon's user's alone: directories 0700, files and sockets 0600. */
  async function open(root: string): Promise<string[]> {
    return (await entries(root)).filter((e) => e.mode !== (e.kind === 'dir' ? 0o700 : 0o600)).map((e) => `${e.path} ${e.mode.toString(8)}`);
  }

  it("keeps the store, everything in it and every socket to the daemon's user, even under umask 000", async () => {
    const own = path.join(dir, 'umask-000');
    const run = (args: string[], input?: Buffer) => tidemark(['--store', own, ...args], input === undefined ? {} : { input });
    const d = await DaemonProcess.start(own, ['--segment-size', '64Ki'], { umask: '000' });
    try {
      for (const args of [
        ['volume', 'create', 'a', '--size', '4Mi'],
        ['volume', 'create', 'b', '--size', '4Mi'],
        ['snapshot', 'create', 'a', 'first'],
        ['marker', 'create', 'both', '--volume', 'a', '--volume', 'b'],
      ]) {
        expect((await run(args)).code).toBe(0);
      }
      // Past one 64 KiB segment, so the journal rolls to new segment files.
      expect((await run(['volume', 'write', 'a'], pattern(512 * 1024, 5))).code).toBe(0);
      expect((await run(['restore', 'a', '--snapshot', 'first', '--to', 'c'])).code).toBe(0);
      const seen = await entries(own);
      expect(seen.filter((e) => e.kind === 'socket').map((e) => e.path).sort()).toEqual(['admin.sock', 'csi.sock', 'nbd.sock']);
      expect(seen.some((e) => e.path === 'groups.log')).toBe(true);
      expect(seen.filter((e) => e.kind === 'file' && e.path.startsWith(path.join('volumes', 'a', 'journal'))).length).toBeGreaterThan(1);
      expect(await open(own)).toEqual([]);
    } finally {
      await d.stop();
    }
    // The checkpoints written at shutdown too.
    expect(await open(own)).toEqual([]);
    expect(d.logs).not.toContain('open to other users');
  });

  it('warns at start about a store that other users can read', async () => {
    const old = path.join(dir, 'loose');
    const first = await DaemonProcess.start(old);
    expect((await tidemark(['--store', old, 'volume', 'create', 'v', '--size', '1Mi'])).code).toBe(0);
    await first.stop();
    expect(first.logs).not.toContain('open to other users');
    // As an older version or a hostPath volume would have left it.
    await fs.chmod(old, 0o755);
    await fs.chmod(path.join(old, 'volumes', 'v', 'image'), 0o644);
    const second = await DaemonProcess.start(old);
    await second.stop();
    const warning = second.logs
      .split('\n')
      .filter((l) => l.includes('open to other users'))
      .map((l) => JSON.parse(l) as { level: string; paths: number; examples: string[] });
    expect(warning).toEqual([expect.objectContaining({ level: 'warn', paths: 2, examples: expect.arrayContaining([old, path.join(old, 'volumes', 'v', 'image')]) })]);
  });
});
