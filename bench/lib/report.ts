/** How a figure compares with its target from the design's performance section. */
export type Verdict = 'meets' | 'misses' | 'info';

/** One line of a benchmark's table: tidemark's figure, the peer's, and what they mean together. */
export interface Row {
  case: string;
  tidemark: string;
  peer?: string;
  ratio?: string;
  target?: string;
  verdict?: Verdict;
}

export interface BenchResult {
  /** Key used by --only and in the JSON output. */
  id: string;
  title: string;
  rows: Row[];
  /** Raw figures (milliseconds, bytes, ratios as numbers) for the JSON output. */
  data: Record<string, unknown>;
  /** What was measured and how, and anything a reader must know to trust the numbers. */
  notes: string[];
}

export interface BenchOptions {
  quick: boolean;
  /** Directory under which stores are created; os.tmpdir() by default. */
  baseDir: string | undefined;
  /** Attribute write-path time to journal append, image write, sync and checkpoints. */
  profile: boolean;
  log: (message: string) => void;
}

export function verdict(ok: boolean): Verdict {
  return ok ? 'meets' : 'misses';
}

const COLUMNS: { key: keyof Row; title: string }[] = [
  { key: 'case', title: 'case' },
  { key: 'tidemark', title: 'tidemark' },
  { key: 'peer', title: 'peer' },
  { key: 'ratio', title: 'ratio' },
  { key: 'target', title: 'target' },
  { key: 'verdict', title: 'status' },
];

/** A plain-text table, readable in a terminal and in a CI log. */
export function renderTable(result: BenchResult): string {
  const cells = result.rows.map((row) => COLUMNS.map((c) => String(row[c.key] ?? '')));
  const used = COLUMNS.map((_, i) => cells.some((r) => r[i] !== ''));
  const widths = COLUMNS.map((c, i) => Math.max(c.title.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => (used[i] ? v.padEnd(widths[i]!) : undefined))
      .filter((v) => v !== undefined)
      .join('  ')
      .trimEnd();
  const out = [`== ${result.title}`, line(COLUMNS.map((c) => c.title)), line(widths.map((w) => '-'.repeat(w)))];
  for (const row of cells) out.push(line(row));
  for (const note of result.notes) out.push(`  * ${note}`);
  return out.join('\n');
}
