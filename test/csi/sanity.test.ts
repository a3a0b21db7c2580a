import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../../src/api/proto.js';

/**
 * csi-sanity (kubernetes-csi/csi-test v5) against a CSI-only daemon over a real engine, through
 * hack/csi-sanity.sh, which builds csi-sanity with Go on first use. The Identity, Controller
 * (snapshots included) and GroupController specs run; the Node specs wait for the data path.
 */
const cache = process.env.TIDEMARK_CACHE ?? path.join(PACKAGE_ROOT, '.cache');

function canBuild(): boolean {
  if (fs.existsSync(path.join(cache, 'bin', 'csi-sanity'))) return true;
  if (spawnSync('sh', ['-c', 'command -v go'], { stdio: 'ignore' }).status === 0) return true;
  const message = 'csi-sanity is not built and Go is missing to build it (install Go >= 1.25: https://go.dev/dl, or apt-get install golang-go where it is new enough)';
  if (process.env.CI === 'true') throw new Error(`${message}; CI requires it`);
  console.warn(`SKIPPED: ${message}`);
  return false;
}

function runSanity(): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(PACKAGE_ROOT, 'hack', 'csi-sanity.sh')], { cwd: PACKAGE_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

describe('csi-sanity', () => {
  it('passes the Identity, Controller and GroupController specs for mount and block volumes', async () => {
    if (!canBuild()) return;
    const { code, output } = await runSanity();
    const summaries = [...output.matchAll(/csi-sanity \((mount|block)\): (\d+) passed, (\d+) failed, (\d+) skipped/g)];
    if (code !== 0 || summaries.length !== 2) throw new Error(`hack/csi-sanity.sh failed (exit ${code}):\n${output}`);
    console.log(output.trim());
    for (const [, accessType, passed, failed] of summaries) {
      expect([accessType, Number(failed)]).toEqual([accessType, 0]);
      expect(Number(passed)).toBeGreaterThan(50);
    }
    expect(summaries.map((s) => s[1])).toEqual(['mount', 'block']);
  }, 15 * 60 * 1000);
});
