// Copies every .proto file under src/ to the same place under dist/src/, next to the
// JavaScript that loads it (src/api/proto.ts, src/csi/proto.ts), so that the build runs
// without src/. Part of `npm run build`, after tsc.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const from = path.join(root, 'src');
const to = path.join(root, 'dist', 'src');

const protos = fs.readdirSync(from, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.proto'));
if (protos.length === 0) throw new Error(`no .proto file under ${from}`);
for (const file of protos) {
  fs.mkdirSync(path.dirname(path.join(to, file)), { recursive: true });
  fs.copyFileSync(path.join(from, file), path.join(to, file));
}
