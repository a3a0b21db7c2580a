import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../../src/util/package.js';

/** The real command, as users run it. */
export const BIN = path.join(PACKAGE_ROOT, 'bin', 'tidemark');

export interface RunResult {
  code: number;
  stdout: Buffer;
  /** stdout as text. */
  out: string;
  stderr: string;
}

/** The environment without TIDEMARK_STORE, so no test reaches a daemon it did not name. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  if (!('TIDEMARK_STORE' in extra)) delete env.TIDEMARK_STORE;
  return env;
}

/** Runs `tidemark ARGS`, optionally feeding stdin, and collects what it printed and its exit code. */
export function tidemark(args: string[], options: { input?: Buffer | string; env?: Record<string, string> } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { env: cleanEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const out = Buffer.concat(stdout);
      resolve({ code: code ?? (signal ? 128 : 1), stdout: out, out: out.toString(), stderr: Buffer.concat(stderr).toString() });
    });
    child.stdin.on('error', () => undefined); // a command that fails early closes stdin under us
    if (options.input !== undefined) child.stdin.end(options.input);
    else child.stdin.end();
  });
}

/** Parses a command's --json output, failing with what it printed when it is not JSON. */
export function json<T = Record<string, unknown>>(result: RunResult): T {
  try {
    return JSON.parse(result.out) as T;
  } catch {
    throw new Error(`not JSON (exit ${result.code}): ${result.out}\nstderr: ${result.stderr}`);
  }
}

/** A `tidemark serve` child process. */
export class DaemonProcess {
  private stderrText = '';
  private exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(private readonly child: ChildProcess) {
    child.stderr!.on('data', (chunk: Buffer) => (this.stderrText += chunk.toString()));
    this.exit = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /**
   * Starts the daemon and waits for its ready line. `umask` starts it under that umask, set by
   * a shell in the child, so the test process's own umask is never touched.
   */
  static async start(store: string, extraArgs: string[] = [], options: { umask?: string } = {}): Promise<DaemonProcess> {
    const args = ['serve', '--store', store, ...extraArgs];
    const child =
      options.umask === undefined
        ? spawn(BIN, args, { env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] })
        : spawn('sh', ['-c', `umask ${options.umask} && exec "$0" "$@"`, BIN, ...args], { env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
    const daemon = new DaemonProcess(child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`daemon not ready after 30 s:\n${daemon.stderrText}`)), 30_000);
      const onData = () => {
        if (daemon.stderrText.includes('"message":"tidemark daemon ready"')) {
          clearTimeout(timer);
          child.stderr!.off('data', onData);
          resolve();
        }
      };
      child.stderr!.on('data', onData);
      void daemon.exit.then(({ code }) => {
        clearTimeout(timer);
        reject(new Error(`daemon exited with ${code} before it was ready:\n${daemon.stderrText}`));
      });
    });
    return daemon;
  }

  get logs(): string {
    return this.stderrText;
  }

  /** Sends SIGTERM and waits for the process to exit. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exit;
  }
}

/** Deterministic bytes that differ at every position, so misplaced data shows. */
export function pattern(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
