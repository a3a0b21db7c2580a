import { spawn, type ChildProcess } from 'node:child_process';
import { PACKAGE_ROOT } from '../../src/util/package.js';

/**
 * Host processes for the tests that drive real Kubernetes components (test/k8s, test/chart,
 * test/cluster): one-shot commands, long-running daemons restarted as a kubelet would, and
 * waiting for a condition with the context that explains a timeout.
 */

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(command: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd ?? PACKAGE_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

/** Polls `check` every 250 ms; a timeout names what was awaited, the last error and `context()`. */
export async function until(what: string, check: () => Promise<boolean>, timeoutMs: number, context: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ''}\n${context()}`);
}

/**
 * A long-running host process whose output is kept. The CSI sidecars exit when the driver
 * restarts; as containers the kubelet restarts them, here `restartOnExit` does.
 */
export class HostProcess {
  private child: ChildProcess | undefined;
  private stopping = false;
  output = '';
  restarts = 0;

  constructor(
    readonly name: string,
    readonly command: string,
    readonly args: string[],
    private readonly env: NodeJS.ProcessEnv,
    private readonly restartOnExit = true,
  ) {}

  start(): void {
    this.stopping = false;
    const child = spawn(this.command, this.args, { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const keep = (chunk: Buffer) => {
      this.output += chunk.toString();
      if (this.output.length > 4_000_000) this.output = this.output.slice(-2_000_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    child.on('exit', (code, signal) => {
      if (this.child !== child || this.stopping) return;
      this.output += `\n[${this.name} exited: ${code ?? signal}]\n`;
      if (!this.restartOnExit) return;
      this.restarts++;
      setTimeout(() => {
        if (!this.stopping && this.child === child) this.start();
      }, 500).unref();
    });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Sends a signal (SIGKILL for a crash) and waits for the exit; a restart follows if asked. */
  kill(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  }

  /** SIGTERM, then SIGKILL after 10 s; never restarted afterwards. */
  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}
