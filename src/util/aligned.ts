import { loadLibc } from './ffi.js';

/**
 * A zeroed buffer of `bytes` bytes in shared memory (so that a worker thread can read it
 * without a copy) whose first byte lies on a multiple of `alignment`, as `O_DIRECT` writes
 * need. Undefined where koffi cannot tell the address: callers then keep to the page cache.
 */
export function allocAlignedShared(bytes: number, alignment: number): Buffer | undefined {
  const ffi = loadLibc();
  if (ffi instanceof Error) return undefined;
  const whole = Buffer.from(new SharedArrayBuffer(bytes + alignment));
  const skip = (alignment - Number(ffi.koffi.address(whole) % BigInt(alignment))) % alignment;
  return whole.subarray(skip, skip + bytes);
}
