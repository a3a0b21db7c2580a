import { writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import type { WriteRequest, WriteReply } from './image-writer.js';

/**
 * The image writer's thread (see image-writer.ts): runs each request's writes in order with
 * plain blocking pwrite calls, which cost this thread microseconds each and the daemon's
 * main thread nothing.
 */
const ZEROS = new Uint8Array(1024 * 1024);

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

function run(request: WriteRequest): void {
  const { fd, buffers, table } = request;
  for (let i = 0; i < table.length; i += 4) {
    const source = table[i]!;
    const start = table[i + 1]!;
    const length = table[i + 2]!;
    const position = table[i + 3]!;
    if (source >= 0) {
      writeAll(fd, new Uint8Array(buffers[source]!, start, length), position);
      continue;
    }
    for (let at = 0; at < length; at += ZEROS.length) writeAll(fd, ZEROS.subarray(0, Math.min(ZEROS.length, length - at)), position + at);
  }
}

parentPort!.on('message', (request: WriteRequest) => {
  let reply: WriteReply;
  try {
    run(request);
    reply = { id: request.id };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    reply = { id: request.id, error: { message: e.message, code: e.code } };
  }
  parentPort!.postMessage(reply);
});
