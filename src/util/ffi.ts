import { createRequire } from 'node:module';
import { constants } from 'node:os';

/**
 * The part of koffi (the project's FFI: prebuilt binaries inside its npm package, no compiler
 * on the node) that tidemark uses, and its one lazy load. Callers reach libc for the few
 * calls Node's fs and net do not offer, and each falls back to a slower way when koffi cannot
 * load here.
 */
export interface KoffiFunction {
  (...args: unknown[]): number;
  async(...args: unknown[]): void;
}

export interface Koffi {
  load(path: string): {
    func(definition: string): KoffiFunction;
    func(name: string, result: string, parameters: unknown[]): KoffiFunction;
  };
  /**
   * An anonymous struct type. koffi's type names are global to the process, so a named one
   * would clash when a module is loaded twice (as test runners do).
   */
  struct(fields: Record<string, string>): unknown;
  pointer(type: unknown): unknown;
  /** The address of a buffer's first byte. */
  address(value: Uint8Array): bigint;
  errno(): number;
}

let loaded: { koffi: Koffi; libc: ReturnType<Koffi['load']> } | Error | undefined;

/** koffi and libc, or the error that kept them from loading (remembered: one try per process). */
export function loadLibc(): { koffi: Koffi; libc: ReturnType<Koffi['load']> } | Error {
  if (loaded) return loaded;
  try {
    // koffi is CommonJS with a native addon; require keeps its loading synchronous.
    const koffi = createRequire(import.meta.url)('koffi') as Koffi;
    loaded = { koffi, libc: koffi.load('libc.so.6') };
  } catch (err) {
    loaded = err instanceof Error ? err : new Error(String(err));
  }
  return loaded;
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, value]) => [value, name]));

/** The name of an errno value a libc call left (ENOSPC), or "errno N" for one Node does not know. */
export function errnoName(code: number): string {
  return ERRNO_NAMES.get(code) ?? `errno ${code}`;
}

/**
 * errno values by which a call says it cannot work here at all (an old kernel, a filesystem
 * or descriptor type without it), rather than that this one attempt failed: a caller then
 * turns its fast path off for good.
 */
export const UNSUPPORTED_ERRNOS: ReadonlySet<number> = new Set([constants.errno.EINVAL, constants.errno.ENOSYS, constants.errno.EOPNOTSUPP]);
