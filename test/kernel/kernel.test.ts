/**
 * The kernel NBD tier (issue 11): hack/kernel-tests.sh boots a Debian kernel that has nbd.ko
 * under qemu and runs test/kernel/guest-scenarios.ts inside it, against the real kernel
 * driver. Each scenario it reports becomes one test here, so a scenario that did not run is a
 * failure, never a pass.
 *
 * The guest runs under software emulation for several minutes, so outside CI it runs only
 * when asked (TIDEMARK_KERNEL_TESTS=1); under CI=true it always runs, and a missing
 * prerequisite fails it.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { needing, root, tool, type Requirement } from '../support/requirements.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..');
const SCENARIOS = ['stage-kernel-path', 'restart-under-writer', 'outage-past-dead-timeout', 'online-expansion', 'csi-sanity-node'];

const askedFor: Requirement = {
  what: 'TIDEMARK_KERNEL_TESTS=1',
  present: () => process.env.TIDEMARK_KERNEL_TESTS === '1' || process.env.CI === 'true',
  install: 'set it to run this suite: it boots a kernel under qemu for several minutes (hack/kernel-tests.sh)',
};

const gate = needing([
  askedFor,
  root('the guest mounts, formats and attaches devices; qemu exports / over 9p'),
  tool('qemu-system-x86_64', 'apt-get install qemu-system-x86'),
  tool('depmod', 'apt-get install kmod'),
  tool('cpio'),
  tool('dpkg-deb', 'a Debian or Ubuntu host'),
]);

interface Outcome {
  ok: boolean;
  seconds: string;
  detail: string;
}

const outcomes = new Map<string, Outcome>();
let transcript = '';
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'tidemark-kernel-'));

gate.describe('the kernel NBD path, in a qemu guest', () => {
  beforeAll(async () => {
    const child = spawn('bash', [path.join(ROOT, 'hack', 'kernel-tests.sh')], { cwd: ROOT, env: { ...process.env, KERNEL_TESTS_OUT: out }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d: Buffer) => (transcript += d.toString()));
    child.stderr.on('data', (d: Buffer) => (transcript += d.toString()));
    await new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const results = fs.existsSync(path.join(out, 'results')) ? fs.readFileSync(path.join(out, 'results'), 'utf8') : '';
    for (const line of results.split('\n')) {
      const match = /^(ok|not ok) (\S+) (\S+) ?(.*)$/.exec(line);
      if (match) outcomes.set(match[2]!, { ok: match[1] === 'ok', seconds: match[3]!, detail: match[4]! });
    }
    // The figures the closing note quotes: boot, restart stall, expansion.
    console.log(`kernel tier (logs in ${out}):\n${transcript}`);
  }, 45 * 60_000);

  for (const name of SCENARIOS) {
    it(name, () => {
      const outcome = outcomes.get(name);
      if (!outcome) throw new Error(`the guest did not report scenario ${name}; hack/kernel-tests.sh said:\n${transcript.slice(-4000)}\n(console: ${path.join(out, 'console.log')})`);
      if (!outcome.ok) throw new Error(`${name} failed after ${outcome.seconds} s: ${outcome.detail.replace(/ \| /g, '\n')}`);
    });
  }
});
