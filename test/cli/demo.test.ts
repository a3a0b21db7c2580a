import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../../src/util/package.js';

/** The README's main job, run as users run it: the demo must pass and clean up after itself. */
describe('hack/demo.sh', () => {
  it('rewinds a damaged volume to its marker, verifies it, and exits 0', async () => {
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-demo-test-'));
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp };
      delete env.TIDEMARK_DEMO_STORE;
      delete env.TIDEMARK_STORE;
      const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn('bash', [path.join(PACKAGE_ROOT, 'hack', 'demo.sh')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
        child.on('error', reject);
        child.on('close', (exitCode) => resolve({ code: exitCode, stdout: out, stderr: err }));
      });
      expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
      expect(stdout).toContain('identical, byte for byte');
      expect(stdout).toMatch(/volume "demo" restored to marker "before-migration" \(sequence \d+\) by rewind/);
      expect(stdout).toMatch(/demo passed\n$/);
      // Its scratch store and work files are gone.
      expect(await fs.readdir(tmp)).toEqual([]);
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  });
});
