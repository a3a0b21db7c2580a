/**
 * Fields never logged. Every field csi.proto marks (csi_secret) is named `secrets`;
 * proto-loader does not expose custom options, so they are matched by name. Mount flags may
 * carry credentials too (the spec says so), and `publishContext`/`volumeContext` are kept.
 */
const SECRET_FIELDS = new Set(['secrets', 'mountFlags']);

/** A copy of a request that is safe to log: secret maps keep only how many keys they had. */
export function redact(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redact);
  if (value === null || typeof value !== 'object' || Buffer.isBuffer(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value as Record<string, unknown>)) {
    if (SECRET_FIELDS.has(key)) {
      const count = field && typeof field === 'object' ? Object.keys(field).length : 0;
      if (count > 0) out[key] = `<redacted: ${count}>`;
      continue;
    }
    out[key] = redact(field);
  }
  return out;
}
