import { needing, root, tool, tools, type Requirement } from './requirements.js';

const there = (what: string): Requirement => ({ what, present: () => true, install: `get ${what}` });
const absent = (what: string): Requirement => ({ what, present: () => false, install: `get ${what}` });

/** A gate with its own environment and a record of what it said. */
function gate(requirements: Requirement[], env: NodeJS.ProcessEnv = {}) {
  const said: string[] = [];
  const result = needing(requirements, { env, warn: (line) => said.push(line) });
  return { ...result, said };
}

describe('needing', () => {
  it('gives jest’s own functions, silently, when everything is there', () => {
    const g = gate([there('a'), there('b')], { CI: 'true' });
    expect(g.it).toBe(it);
    expect(g.test).toBe(test);
    expect(g.describe).toBe(describe);
    expect(g.missing).toBeUndefined();
    expect(g.said).toEqual([]);
  });

  it('gives the .skip functions when something is missing, and names it and how to get it', () => {
    const g = gate([there('present-1'), absent('absent-1'), absent('absent-2')]);
    expect(g.it).toBe(it.skip);
    expect(g.test).toBe(test.skip);
    expect(g.describe).toBe(describe.skip);
    expect(g.missing).toBe('absent-1 (get absent-1), absent-2 (get absent-2)');
    expect(g.said).toEqual(['SKIPPED: missing absent-1 (get absent-1), absent-2 (get absent-2)']);
  });

  it('says the same thing once per test file', () => {
    const said: string[] = [];
    for (let i = 0; i < 3; i++) needing([absent('absent-3')], { env: {}, warn: (line) => said.push(line) });
    expect(said).toEqual(['SKIPPED: missing absent-3 (get absent-3)']);
  });

  it('throws under CI=true, naming what is missing, so that the test file fails', () => {
    expect(() => gate([there('present-2'), absent('absent-4')], { CI: 'true' })).toThrow('missing absent-4 (get absent-4); CI requires it');
    // Only CI=true: anything else is a developer's machine.
    expect(gate([absent('absent-5')], { CI: 'false' }).describe).toBe(describe.skip);
  });

  it('skips for a missing optional requirement even under CI=true, and asks it only once the others are there', () => {
    let asked = 0;
    const kernel: Requirement = { what: 'a kernel module', present: () => (asked++, false), install: 'modprobe it', optional: true };
    const g = gate([there('present-3'), kernel], { CI: 'true' });
    expect(g.it).toBe(it.skip);
    expect(g.said).toEqual(['SKIPPED: missing a kernel module (modprobe it)']);
    expect(asked).toBe(1);
    expect(() => gate([absent('absent-6'), kernel], { CI: 'true' })).toThrow('missing absent-6 (get absent-6); CI requires it');
    expect(asked).toBe(1);
  });

  it('names the Debian package of a tool, and why root is needed', () => {
    expect(tool('qemu-io').install).toBe('apt-get install qemu-utils');
    expect(tools('nbdinfo', 'sh').map((r) => [r.what, r.install])).toEqual([
      ['nbdinfo', 'apt-get install libnbd-bin'],
      ['sh', 'apt-get install sh'],
    ]);
    expect(tool('sh').present()).toBe(true);
    expect(tool('no-such-tool-tidemark').present()).toBe(false);
    expect(root('mounts').install).toBe('run the tests as root: mounts');
    expect(root('mounts').present()).toBe(process.getuid?.() === 0);
  });
});
