import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { TidemarkError, alreadyExists, busy, classifyError, failedPrecondition, invalidArgument, isTidemarkError, notFound, outOfRange } from '../../src/util/errors.js';

async function osError(action: () => Promise<unknown>): Promise<unknown> {
  try {
    await action();
  } catch (err) {
    return err;
  }
  throw new Error('the action was expected to fail');
}

describe('TidemarkError', () => {
  it('carries a code, a message and details, and is an Error', () => {
    const err = new TidemarkError('EXPIRED', 'gone', { volume: 'v' });
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('TidemarkError');
    expect(err.code).toBe('EXPIRED');
    expect(err.message).toBe('gone');
    expect(err.details).toEqual({ volume: 'v' });
    expect(isTidemarkError(err)).toBe(true);
    expect(isTidemarkError(new Error('x'))).toBe(false);
    expect(isTidemarkError('x')).toBe(false);
  });

  it.each([
    [invalidArgument, 'INVALID_ARGUMENT'],
    [notFound, 'NOT_FOUND'],
    [alreadyExists, 'ALREADY_EXISTS'],
    [outOfRange, 'OUT_OF_RANGE'],
    [failedPrecondition, 'FAILED_PRECONDITION'],
    [busy, 'BUSY'],
  ] as const)('%p makes %s', (make, code) => {
    const err = make('message', { snapshot: 's' });
    expect(err.code).toBe(code);
    expect(err.details).toEqual({ snapshot: 's' });
  });
});

describe('classifyError', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tidemark-errors-'));
  });
  afterAll(async () => {
    await fs.chmod(dir, 0o700).catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('passes a TidemarkError through unchanged', () => {
    const original = busy('held');
    expect(classifyError(original, 'anything')).toBe(original);
  });

  it('maps a missing file to INTERNAL, not NOT_FOUND (which would say the object asked for is gone), and says what was being done', async () => {
    const err = classifyError(await osError(() => fs.readFile(path.join(dir, 'nope'))), 'reading the checkpoint');
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toMatch(/^reading the checkpoint: /);
    expect(err.details.errno).toBe('ENOENT');
  });

  it('maps an unexpected OS error (writing to a directory) to INTERNAL, keeping the errno', async () => {
    const err = classifyError(await osError(() => fs.writeFile(dir, 'x')), 'writing');
    expect(err.code).toBe('INTERNAL');
    expect(err.details.errno).toBe('EISDIR');
  });

  it.each(['ENOSPC', 'EDQUOT'])('maps %s to RESOURCE_EXHAUSTED with a disk-full message', (errno) => {
    const err = classifyError(Object.assign(new Error('no space left on device'), { code: errno }), 'appending to the journal');
    expect(err.code).toBe('RESOURCE_EXHAUSTED');
    expect(err.message).toMatch(/appending to the journal: disk full/);
  });

  it.each(['EACCES', 'EPERM', 'EROFS'])('maps %s to FAILED_PRECONDITION', (errno) => {
    expect(classifyError(Object.assign(new Error('denied'), { code: errno }), 'x').code).toBe('FAILED_PRECONDITION');
  });

  it('maps anything else to INTERNAL, including values that are not errors', () => {
    expect(classifyError(Object.assign(new Error('io'), { code: 'EIO' }), 'x').code).toBe('INTERNAL');
    expect(classifyError(new Error('plain'), 'x').code).toBe('INTERNAL');
    expect(classifyError('a string', 'x').message).toBe('x: a string');
    expect(classifyError(undefined, 'x').code).toBe('INTERNAL');
  });
});
