import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { AdminClient } from '../../src/api/client.js';
import { AdminServer } from '../../src/api/server.js';
import { Engine } from '../../src/engine/index.js';
import { TidemarkError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';

let dir: string;
let engine: Engine;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-sock-'));
  engine = await Engine.open({ store: path.join(dir, 'store'), upkeepIntervalMs: 0 });
});

afterAll(async () => {
  await engine.close();
  await fs.rm(dir, { recursive: true, force: true });
});

async function failure(promise: Promise<unknown>): Promise<TidemarkError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof TidemarkError) return err;
    throw err;
  }
  throw new Error('expected a failure');
}

/** A socket file whose listener was SIGKILLed, as a crashed daemon leaves behind. */
async function staleSocket(socket: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socket)}, () => console.log('up'))`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`listener exited ${code}`)));
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
  expect((await fs.lstat(socket)).isSocket()).toBe(true);
}

describe('admin socket handling', () => {
  it('replaces a stale socket left by a dead daemon, and removes its own on close', async () => {
    const socket = path.join(dir, 'stale.sock');
    await staleSocket(socket);
    const server = new AdminServer(engine, silentLogger());
    await server.listen(socket);
    const client = new AdminClient(socket);
    try {
      expect((await client.status()).store).toBe(engine.store);
      // Only the daemon's user may talk to it.
      expect((await fs.stat(socket)).mode & 0o777).toBe(0o600);
    } finally {
      client.close();
      await server.close();
    }
    await expect(fs.lstat(socket)).rejects.toThrow(/ENOENT/);
  });

  it('refuses a socket another daemon answers on, and leaves that daemon running', async () => {
    const socket = path.join(dir, 'taken.sock');
    const first = new AdminServer(engine, silentLogger());
    await first.listen(socket);
    const second = new AdminServer(engine, silentLogger());
    try {
      const err = await failure(second.listen(socket));
      expect(err.code).toBe('STORE_LOCKED');
      expect(err.message).toMatch(/another tidemark daemon answers on/);
      const client = new AdminClient(socket);
      try {
        expect((await client.status()).pid).toBe(process.pid);
      } finally {
        client.close();
      }
    } finally {
      await second.close();
      await first.close();
    }
  });

  it('will not delete a file that is not a socket', async () => {
    const socket = path.join(dir, 'file.sock');
    await fs.writeFile(socket, 'precious');
    const err = await failure(new AdminServer(engine, silentLogger()).listen(socket));
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(err.message).toMatch(/is not a socket/);
    expect(await fs.readFile(socket, 'utf8')).toBe('precious');
  });

  it('refuses a socket path longer than unix sockets allow, saying why', async () => {
    const err = await failure(new AdminServer(engine, silentLogger()).listen(path.join(dir, 'x'.repeat(120), 'admin.sock')));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toMatch(/longer than the 107 bytes/);
  });

  it('creates the directory of the socket', async () => {
    const socket = path.join(dir, 'run', 'deep', 'admin.sock');
    const server = new AdminServer(engine, silentLogger());
    await server.listen(socket);
    try {
      expect(server.address).toBe(socket);
      expect((await fs.lstat(socket)).isSocket()).toBe(true);
    } finally {
      await server.close();
    }
  });
});
