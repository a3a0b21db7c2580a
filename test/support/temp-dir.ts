import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * Gives each test of the calling describe block a fresh directory under the system's temp
 * directory (`tidemark-<prefix>-…`), handed to `use` before the test, and removes it with
 * everything in it after the test. Call it at the top of the block.
 */
export function tempDirEach(prefix: string, use: (dir: string) => void): void {
  let dir: string | undefined;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), `tidemark-${prefix}-`));
    use(dir);
  });
  afterEach(async () => {
    if (dir) await fs.rm(dir, { recursive: true, force: true });
    dir = undefined;
  });
}
