import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../../src/util/package.js';
import { CACHE, haveTool, needing, root } from '../support/requirements.js';

/**
 * csi-sanity (kubernetes-csi/csi-test v5), every spec, against a real `tidemark serve`,
 * through hack/csi-sanity.sh, which builds csi-sanity with Go on first use. Node specs attach,
 * format and mount for real, so this needs root.
 */
const sanity = needing([
  {
    what: 'csi-sanity, or Go to build it',
    present: () => fs.existsSync(path.join(CACHE, 'bin', 'csi-sanity')) || haveTool('go'),
    install: 'install Go >= 1.25: https://go.dev/dl, or apt-get install golang-go where it is new enough',
  },
  root('csi-sanity stages volumes for real: NBD attach, mkfs, mount'),
]);

function runSanity(parameters: 'project' | 'none'): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(PACKAGE_ROOT, 'hack', 'csi-sanity.sh')], {
      cwd: PACKAGE_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CSI_SANITY_PARAMETERS: parameters },
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

describe('csi-sanity', () => {
  sanity.it('passes every spec for mount and block volumes', async () => {
    // With the project's mutable parameters, and in csi-sanity's default configuration (none).
    for (const parameters of ['project', 'none'] as const) {
      const { code, output } = await runSanity(parameters);
      const summaries = [...output.matchAll(/csi-sanity \((mount|block)\): (\d+) passed, (\d+) failed, (\d+) skipped/g)];
      if (code !== 0 || summaries.length !== 2) throw new Error(`hack/csi-sanity.sh (parameters: ${parameters}) failed (exit ${code}):\n${output}`);
      console.log(`parameters: ${parameters}\n${output.trim()}`);
      for (const [, accessType, passed, failed] of summaries) {
        expect([parameters, accessType, Number(failed)]).toEqual([parameters, accessType, 0]);
        expect(Number(passed)).toBeGreaterThan(80);
      }
      expect(summaries.map((s) => s[1])).toEqual(['mount', 'block']);
    }
  }, 15 * 60 * 1000);
});
