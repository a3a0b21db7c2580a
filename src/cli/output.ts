import type { RetentionPolicy } from '../engine/index.js';
import { formatSize } from '../util/sizes.js';
import { formatDuration } from './args.js';

/** Writes to stdout and waits until the stream has taken it, so large outputs stay bounded. */
export async function writeOut(text: string | Uint8Array): Promise<void> {
  if (process.stdout.write(text)) return;
  await new Promise<void>((resolve) => process.stdout.once('drain', resolve));
}

export function printJson(value: unknown): Promise<void> {
  return writeOut(JSON.stringify(value, null, 2) + '\n');
}

export function printLine(line = ''): Promise<void> {
  return writeOut(line + '\n');
}

/** Columns padded to their widest cell; the columns named in `right` are right-aligned. */
export function table(headers: string[], rows: string[][], right: number[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (right.includes(i) ? cell.padStart(widths[i]!) : i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** "key: value" lines with the values lined up. */
export function keyValues(pairs: [string, string][]): string {
  const width = Math.max(...pairs.map(([k]) => k.length)) + 1;
  return pairs.map(([k, v]) => `${(k + ':').padEnd(width)} ${v}`).join('\n');
}

export function size(bytes: number): string {
  return formatSize(bytes);
}

export function sizeWithBytes(bytes: number): string {
  return bytes < 1024 ? `${bytes} B` : `${formatSize(bytes)} (${bytes} bytes)`;
}

export function retention(policy: RetentionPolicy): string {
  const parts: string[] = [];
  if (policy.maxBytes !== undefined) parts.push(`size ${formatSize(policy.maxBytes)}`);
  if (policy.maxAgeSeconds !== undefined) parts.push(`age ${formatDuration(policy.maxAgeSeconds)}`);
  return parts.length > 0 ? parts.join(', ') : 'unlimited';
}

/** A time in UTC to the second, short enough for a table. */
export function time(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}
