// @node-rs/crc32 uses the SSE4.2 CRC32C instruction through a prebuilt N-API module: the
// journal checksums every byte written, so a JavaScript table loop would cap throughput.
import { crc32c as nativeCrc32c } from '@node-rs/crc32';

export function crc32c(data: Uint8Array, seed = 0): number {
  return nativeCrc32c(data, seed) >>> 0;
}
