import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as protoLoader from '@grpc/proto-loader';
import { PROTO_LOADER_OPTIONS } from '../../src/util/grpc.js';
import { PACKAGE_ROOT } from '../../src/util/package.js';
import { run } from '../support/processes.js';
import { needing } from '../support/requirements.js';

/**
 * The message types in src/csi/generated and src/api/generated are generated from the protos
 * by hack/gen-types.sh. These tests fail when someone edits a .proto without regenerating,
 * and when the generator's options drift from the ones the daemon loads the protos with.
 */

const SCRIPT = path.join(PACKAGE_ROOT, 'hack', 'gen-types.sh');

/** What each generated directory is made from, relative to src/. */
const TARGETS = { 'csi/generated': 'csi/csi.proto', 'api/generated': 'api/admin.proto' };

/** The generator's flag for each loader option, as hack/gen-types.sh must pass it. */
function flagsFor(options: protoLoader.Options): string[] {
  const flags: string[] = [];
  const known = new Set(['keepCase', 'longs', 'enums', 'defaults', 'oneofs']);
  for (const key of Object.keys(options)) {
    if (!known.has(key)) throw new Error(`PROTO_LOADER_OPTIONS has "${key}", which this test (and hack/gen-types.sh) does not know yet`);
  }
  if (options.keepCase) flags.push('--keepCase');
  if (options.longs === String) flags.push('--longs=String');
  else if (options.longs === Number) flags.push('--longs=Number');
  if (options.enums === String) flags.push('--enums=String');
  if (options.defaults) flags.push('--defaults');
  if (options.oneofs) flags.push('--oneofs');
  return flags;
}

describe('hack/gen-types.sh', () => {
  let tmp: string;

  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-gen-types-'));
  });

  afterAll(async () => {
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('finds the checked-in types current', async () => {
    const result = await run('bash', [SCRIPT, '--check']);
    expect({ code: result.code, diff: result.stdout }).toEqual({ code: 0, diff: '' });
    expect(result.stderr).toContain('the generated types are current');
  });

  it('passes the generator the options the daemon loads the protos with', async () => {
    const result = await run('bash', [SCRIPT, '--print-flags']);
    expect(result.code).toBe(0);
    const flags = result.stdout.trim().split('\n');
    const loaderFlags = flags.filter((f) => !f.startsWith('--grpcLib=') && !f.startsWith('--importFileExtension='));
    expect(loaderFlags.sort()).toEqual(flagsFor(PROTO_LOADER_OPTIONS).sort());
    expect(flags).toEqual(expect.arrayContaining(['--grpcLib=@grpc/grpc-js', '--importFileExtension=.js']));
  });

  it('fails the check after a proto changes, and passes again once the types are regenerated', async () => {
    // A copy of the protos and their generated types, so that the real tree is not touched.
    const root = path.join(tmp, 'tree');
    for (const [generated, proto] of Object.entries(TARGETS)) {
      await fs.mkdir(path.dirname(path.join(root, 'src', proto)), { recursive: true });
      await fs.copyFile(path.join(PACKAGE_ROOT, 'src', proto), path.join(root, 'src', proto));
      await fs.cp(path.join(PACKAGE_ROOT, 'src', generated), path.join(root, 'src', generated), { recursive: true });
    }
    const env = { ...process.env, GEN_TYPES_ROOT: root };
    expect((await run('bash', [SCRIPT, '--check'], { env })).code).toBe(0);

    await fs.appendFile(path.join(root, 'src', 'api', 'admin.proto'), '\nmessage GenTypesProbe {\n  string note = 1;\n}\n');
    const stale = await run('bash', [SCRIPT, '--check'], { env });
    expect(stale.code).toBe(1);
    expect(stale.stdout).toContain('GenTypesProbe');
    expect(stale.stderr).toContain('src/api/generated is not what src/api/admin.proto generates');
    expect(stale.stderr).not.toContain('src/csi/generated is not');

    const regenerated = await run('bash', [SCRIPT], { env });
    expect(regenerated.code).toBe(0);
    await expect(fs.readFile(path.join(root, 'src', 'api', 'generated', 'tidemark', 'v1', 'GenTypesProbe.ts'), 'utf8')).resolves.toContain("'note'");
    expect((await run('bash', [SCRIPT, '--check'], { env })).code).toBe(0);
  });

  it('refuses an unknown argument', async () => {
    const result = await run('bash', [SCRIPT, '--bogus']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("unknown argument '--bogus'");
  });

  const shellcheck = needing([
    {
      what: 'shellcheck',
      present: () => spawnSync('sh', ['-c', 'command -v shellcheck'], { stdio: 'ignore' }).status === 0,
      install: 'apt-get install shellcheck (hack/setup.sh)',
    },
  ]);

  shellcheck.it('passes bash -n and shellcheck', async () => {
    const syntax = await run('bash', ['-n', SCRIPT]);
    expect({ code: syntax.code, stderr: syntax.stderr }).toEqual({ code: 0, stderr: '' });
    const lint = await run('shellcheck', ['--severity=style', '--external-sources', SCRIPT]);
    expect({ code: lint.code, output: lint.stdout }).toEqual({ code: 0, output: '' });
  });
});
