/**
 * A process that opens the engine on a store and idles, for the memory benchmark when the
 * real daemon (`tidemark serve`) is not built, and as its engine-only comparison. Prints one
 * JSON line once the engine is open; closes it on SIGTERM or SIGINT.
 *
 *   node dist/bench/idle-engine.js STORE
 */
import { Engine } from '../src/engine/index.js';

const store = process.argv[2];
if (!store) {
  process.stderr.write('usage: idle-engine.js STORE\n');
  process.exit(2);
}

const engine = await Engine.open({ store });
process.stdout.write(`${JSON.stringify({ ready: true, volumes: engine.listVolumes().length, memoryBytes: engine.memoryBytes() })}\n`);

const keepAlive = setInterval(() => undefined, 1 << 30);
const stop = () => {
  clearInterval(keepAlive);
  engine.close().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`closing the engine failed: ${String(err)}\n`);
      process.exit(1);
    },
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
