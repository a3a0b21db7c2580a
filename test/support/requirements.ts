/**
 * The one rule for tests that need something of the host (a tool, root, a build cache, a
 * kernel module): decided once, when the test file is loaded, never inside a test.
 *
 * - Everything there: `needing(...)` gives jest's own `it`, `test` and `describe`.
 * - Something missing: it gives `it.skip`, `test.skip` and `describe.skip`, so jest counts
 *   the tests as skipped (and hack/jest-summary-reporter.cjs prints that count), and logs
 *   one line, `SKIPPED: missing <what> (<how to get it>)`.
 * - Under CI=true a missing requirement throws instead, which fails the test file: CI never
 *   passes by skipping. Only requirements marked `optional` (what depends on the host's
 *   kernel rather than on the project's setup) skip in CI too.
 *
 * A test that returns early when something is missing would be counted as passed; use this.
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { sendFileAvailable } from '../../src/util/send-file.js';

export interface Requirement {
  /** What is needed, as the skip message names it: a tool, "root", a built binary. */
  what: string;
  /** Whether it is there; called once, when the test file is loaded. */
  present: () => boolean;
  /** How to get it, for the skip message. */
  install: string;
  /**
   * Missing it skips even under CI=true: it depends on the host (its kernel), not on the
   * project's setup. Checked only when every other requirement is there, so it may rely on
   * them (root, a tool).
   */
  optional?: boolean;
}

/** The tests' functions for one set of requirements: jest's own, or their `.skip`. */
export interface Gate {
  it: jest.It;
  test: jest.It;
  describe: jest.Describe;
  /** What is missing, as logged; undefined when everything is there. */
  missing: string | undefined;
}

/** Where a tool comes from on Debian and Ubuntu, for skip messages. */
const PACKAGES: Record<string, string> = {
  'qemu-io': 'qemu-utils',
  'qemu-img': 'qemu-utils',
  'qemu-nbd': 'qemu-utils',
  nbdkit: 'nbdkit',
  nbdcopy: 'libnbd-bin',
  nbdinfo: 'libnbd-bin',
  nbdfuse: 'libnbd-bin',
  'nbd-client': 'nbd-client',
  fusermount3: 'fuse3',
  losetup: 'mount',
  mount: 'mount',
  umount: 'mount',
  blkid: 'util-linux',
  blockdev: 'util-linux',
  'mkfs.ext4': 'e2fsprogs',
  'fsck.ext4': 'e2fsprogs',
  resize2fs: 'e2fsprogs',
  'mkfs.xfs': 'xfsprogs',
  xfs_growfs: 'xfsprogs',
  shellcheck: 'shellcheck',
};

/** The project's build cache (hack/build-k8s.sh, hack/csi-sanity.sh). */
export const CACHE = process.env.TIDEMARK_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'tidemark');

/** True when `name` runs from PATH, or sits in /usr/sbin or /sbin (which a user's PATH may lack). */
export function haveTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name} || test -x /usr/sbin/${name} || test -x /sbin/${name}`], { stdio: 'ignore' }).status === 0;
}

/** A command on PATH (or in /usr/sbin, /sbin); `install` defaults to its Debian package. */
export function tool(name: string, install = `apt-get install ${PACKAGES[name] ?? name}`): Requirement {
  return { what: name, present: () => haveTool(name), install };
}

export const tools = (...names: string[]): Requirement[] => names.map((name) => tool(name));

/** Root, and why the test needs it. */
export function root(why: string): Requirement {
  return { what: 'root', present: () => process.getuid?.() === 0, install: `run the tests as root: ${why}` };
}

/**
 * A kernel with cachestat(2) (Linux 6.5), which read replies from the image file need:
 * optional, since it is the host's kernel and not the project's setup.
 */
export function kernelWithCachestat(): Requirement {
  return { what: 'a kernel with cachestat(2)', present: sendFileAvailable, install: 'Linux 6.5 or later', optional: true };
}

/** Says once per test file what is missing, however many gates find the same. */
const said = new Set<string>();

export interface Context {
  /** The environment whose CI decides between skipping and failing; process.env by default. */
  env?: NodeJS.ProcessEnv;
  /**
   * Where the skip line goes; stderr by default, written directly: jest drops the console
   * output of a test file whose tests were all skipped, which is when the line matters most.
   */
  warn?: (line: string) => void;
}

/**
 * Decides, now, whether tests needing `requirements` run: see the top of this file. Call it at
 * the top level of a test file (or of a describe block), never inside a test.
 */
export function needing(requirements: Requirement[], context: Context = {}): Gate {
  const env = context.env ?? process.env;
  const warn = context.warn ?? ((line: string) => process.stderr.write(`${line}\n`));
  const phrase = (r: Requirement) => `${r.what} (${r.install})`;
  const required = requirements.filter((r) => !r.optional);
  const lacking = required.filter((r) => !r.present());
  if (lacking.length > 0 && env.CI === 'true') throw new Error(`missing ${lacking.map(phrase).join(', ')}; CI requires it`);
  if (lacking.length === 0) lacking.push(...requirements.filter((r) => r.optional && !r.present()));
  if (lacking.length === 0) return { it, test, describe, missing: undefined };
  const missing = lacking.map(phrase).join(', ');
  const line = `SKIPPED: missing ${missing}`;
  if (!said.has(line)) {
    said.add(line);
    warn(line);
  }
  return { it: it.skip, test: test.skip, describe: describe.skip, missing };
}
