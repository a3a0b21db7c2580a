/**
 * The build runs on its own: what package.json's `files` ships (bin/, dist/src/) and
 * package.json, with node_modules beside them and no src/, is a working tidemark: the
 * command, the daemon, the admin API and the CSI services (both read their .proto files at
 * start, from beside the compiled JavaScript). The container image holds the same
 * (hack/image.list).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { csiClientConstructor } from '../../src/csi/index.js';
import { PACKAGE_ROOT } from '../../src/util/package.js';

let dir: string;
let app: string;

const manifest = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string; files: string[] };

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidemark-standalone-'));
  app = path.join(dir, 'app');
  for (const entry of [...manifest.files, 'package.json']) fs.cpSync(path.join(PACKAGE_ROOT, entry), path.join(app, entry), { recursive: true });
  fs.symlinkSync(path.join(PACKAGE_ROOT, 'node_modules'), path.join(app, 'node_modules'));
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs the copy's bin/tidemark to completion. */
function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(app, 'bin', 'tidemark'), args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the build without src/', () => {
  it('ships the .proto files beside the JavaScript that loads them, and no src/', () => {
    expect(fs.existsSync(path.join(app, 'src'))).toBe(false);
    expect(fs.existsSync(path.join(app, 'dist', 'src', 'api', 'admin.proto'))).toBe(true);
    expect(fs.existsSync(path.join(app, 'dist', 'src', 'csi', 'csi.proto'))).toBe(true);
  });

  it('says its version', async () => {
    const result = await run(['--version']);
    expect(result).toMatchObject({ code: 0, stdout: `${manifest.version}\n` });
  });

  it('starts the daemon, and serves the admin API and the CSI services', async () => {
    const store = path.join(dir, 'store');
    const daemon = spawn(path.join(app, 'bin', 'tidemark'), ['serve', '--store', store, '--node-id', 'standalone'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    let logs = '';
    const exited = new Promise<number | null>((resolve) => daemon.once('exit', (code) => resolve(code)));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`daemon not ready after 30 s:\n${logs}`)), 30_000);
        daemon.stderr.on('data', (c: Buffer) => {
          logs += c.toString();
          if (logs.includes('"message":"tidemark daemon ready"')) {
            clearTimeout(timer);
            resolve();
          }
        });
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`daemon exited with ${code} before it was ready:\n${logs}`));
        });
      });
      expect((await run(['--store', store, 'volume', 'create', 'v', '--size', '1Mi'])).code).toBe(0);
      const listed = await run(['--store', store, 'volume', 'list', '--json']);
      expect(listed.code).toBe(0);
      expect((JSON.parse(listed.stdout) as { name: string }[]).map((v) => v.name)).toEqual(['v']);

      const Identity = csiClientConstructor('Identity');
      const identity = new Identity(`unix:${path.join(store, 'csi.sock')}`, grpc.credentials.createInsecure());
      try {
        const info = await new Promise<Record<string, unknown>>((resolve, reject) =>
          (identity as unknown as Record<string, (req: object, cb: (err: Error | null, res: Record<string, unknown>) => void) => void>).GetPluginInfo!.call(identity, {}, (err, res) => (err ? reject(err) : resolve(res))),
        );
        expect(info).toMatchObject({ vendorVersion: manifest.version });
      } finally {
        identity.close();
      }
    } finally {
      daemon.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
  });
});
