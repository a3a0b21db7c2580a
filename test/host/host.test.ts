import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { isMountPoint, mountAt, mountFilesystem, readMounts, runTool } from '../../src/host/index.js';
import { TidemarkError } from '../../src/util/errors.js';

describe('host tools', () => {
  it('names the package to install when a tool is missing', async () => {
    await expect(runTool('no-such-tool-tidemark', [])).rejects.toMatchObject({ code: 'FAILED_PRECONDITION', message: expect.stringContaining('not installed') });
    await expect(runTool('nbdfuse-missing', [])).rejects.toBeInstanceOf(TidemarkError);
  });

  it('reports a failing tool with its exit status and its own words', async () => {
    const err = (await runTool('sh', ['-c', 'echo "disk on fire" >&2; exit 3']).catch((e: unknown) => e)) as TidemarkError;
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toContain('exited with 3');
    expect(err.message).toContain('disk on fire');
    expect((await runTool('sh', ['-c', 'exit 2'], { okCodes: [0, 2] })).code).toBe(2);
  });

  it('names the tool but never its arguments, which may hold secrets', async () => {
    const err = (await runTool('sh', ['-c', 'echo "disk on fire" >&2; exit 3', 'sh', 'password=hunter2']).catch((e: unknown) => e)) as TidemarkError;
    expect(err.message).toBe('sh exited with 3: disk on fire');
    expect(JSON.stringify(err.details)).not.toContain('hunter2');
  });

  it('keeps mount flags out of a failed mount\'s error', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-host-'));
    try {
      const err = (await mountFilesystem(path.join(dir, 'no-such-device'), dir, 'ext4', ['noatime', 'password=hunter2']).catch((e: unknown) => e)) as TidemarkError;
      expect(err).toBeInstanceOf(TidemarkError);
      expect(err.message).toMatch(/^mount /);
      expect(err.message).not.toMatch(/hunter2|noatime|-o /);
    } finally {
      await fs.rm(dir, { recursive: true });
    }
  });

  it('kills a tool that hangs', async () => {
    const err = (await runTool('sleep', ['10'], { timeoutMs: 100 }).catch((e: unknown) => e)) as TidemarkError;
    expect(err.message).toContain('killed by SIGKILL');
  });
});

describe('mount table', () => {
  it('tells mount points from plain directories', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-host-'));
    try {
      expect(await isMountPoint('/')).toBe(true);
      expect(await isMountPoint('/proc')).toBe(true);
      expect(await isMountPoint(dir)).toBe(false);
      expect((await mountAt('/proc'))?.fsType).toBe('proc');
    } finally {
      await fs.rm(dir, { recursive: true });
    }
  });

  it('reads every entry with its source and filesystem type', async () => {
    const mounts = await readMounts();
    expect(mounts.length).toBeGreaterThan(1);
    for (const m of mounts) {
      expect(m.mountPoint.startsWith('/')).toBe(true);
      expect(m.fsType).not.toBe('');
    }
  });
});
