import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package root, found from this module's place in the build: dist/src/util/package.js sits
 * three levels below it. It holds package.json (the version); nothing under src/ is read at
 * run time. Here in util, rather than in one of the layers that report the version (the CLI,
 * the admin API, CSI Identity), so that none of them has to reach into another for it.
 */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

let version: string | undefined;

/** The version in package.json, reported by GetStatus, GetPluginInfo and `tidemark --version`. */
export function packageVersion(): string {
  if (version === undefined) {
    try {
      const parsed = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version?: unknown };
      version = typeof parsed.version === 'string' ? parsed.version : 'unknown';
    } catch {
      version = 'unknown';
    }
  }
  return version;
}
