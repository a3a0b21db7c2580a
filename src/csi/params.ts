import type { RetentionPolicy } from '../engine/index.js';
import { TidemarkError } from '../util/errors.js';
import { isPowerOfTwo, parseSize } from '../util/sizes.js';
import { invalid, type CsiError } from './errors.js';
import type { StringMap } from './messages.js';

/**
 * StorageClass parameters (CreateVolume `parameters`), VolumeAttributesClass parameters
 * (`mutable_parameters`, ControllerModifyVolume) and the snapshot classes' parameters.
 * Keys under csi.storage.k8s.io/ are the sidecars' own (PVC name, namespace, ...) and are
 * ignored; any other unknown key is refused, so a typo does not pass silently.
 */
export const PARAM_FS_TYPE = 'fsType';
export const PARAM_GRANULARITY = 'trackingGranularity';
export const PARAM_RETENTION_SIZE = 'retentionSize';
export const PARAM_RETENTION_AGE = 'retentionAge';

export const FS_TYPES = ['ext4', 'xfs'] as const;
export type FsType = (typeof FS_TYPES)[number];
export const DEFAULT_FS_TYPE: FsType = 'ext4';

const SIDECAR_PREFIX = 'csi.storage.k8s.io/';
/** Clears a retention limit in ControllerModifyVolume. */
const NO_LIMIT = 'none';
const MIN_GRANULARITY = 4096;
const MAX_GRANULARITY = 64 * 1024 * 1024;

/** A change to one retention limit: a value, `null` to remove the limit, absent to keep it. */
export interface RetentionChange {
  maxBytes?: number | null;
  maxAgeSeconds?: number | null;
}

export interface VolumeParameters {
  fsType?: FsType;
  granularity?: number;
  retention: RetentionChange;
  /** The parameters in one canonical spelling, for comparing a retried CreateVolume. */
  canonical: StringMap;
}

export interface MutableParameters {
  retention: RetentionChange;
  canonical: StringMap;
}

export function isFsType(value: string): value is FsType {
  return (FS_TYPES as readonly string[]).includes(value);
}

function ours(params: StringMap): [string, string][] {
  return Object.entries(params).filter(([key]) => !key.startsWith(SIDECAR_PREFIX));
}

function unknownKey(key: string, where: string, allowed: string[]): CsiError {
  return invalid(`unknown ${where} key "${key}"; tidemark understands ${allowed.join(', ')} (and ignores csi.storage.k8s.io/*)`);
}

export function parseVolumeParameters(params: StringMap): VolumeParameters {
  const result: VolumeParameters = { retention: {}, canonical: {} };
  const allowed = [PARAM_FS_TYPE, PARAM_GRANULARITY, PARAM_RETENTION_SIZE, PARAM_RETENTION_AGE];
  for (const [key, value] of ours(params)) {
    switch (key) {
      case PARAM_FS_TYPE: {
        const fsType = value.trim().toLowerCase();
        if (!isFsType(fsType)) throw invalid(`parameter ${PARAM_FS_TYPE} "${value}" is not supported; use ${FS_TYPES.join(' or ')}`);
        result.fsType = fsType;
        result.canonical[key] = fsType;
        break;
      }
      case PARAM_GRANULARITY: {
        const granularity = parseGranularity(value);
        result.granularity = granularity;
        result.canonical[key] = String(granularity);
        break;
      }
      case PARAM_RETENTION_SIZE:
      case PARAM_RETENTION_AGE:
        applyRetention(result, key, value, 'parameter');
        break;
      default:
        throw unknownKey(key, 'parameter', allowed);
    }
  }
  return result;
}

export function parseMutableParameters(params: StringMap): MutableParameters {
  const result: MutableParameters = { retention: {}, canonical: {} };
  for (const [key, value] of ours(params)) {
    if (key === PARAM_RETENTION_SIZE || key === PARAM_RETENTION_AGE) {
      applyRetention(result, key, value, 'mutable parameter');
    } else if (key === PARAM_FS_TYPE || key === PARAM_GRANULARITY) {
      throw invalid(`${key} is fixed when a volume is created; only ${PARAM_RETENTION_SIZE} and ${PARAM_RETENTION_AGE} can change`);
    } else {
      throw unknownKey(key, 'mutable parameter', [PARAM_RETENTION_SIZE, PARAM_RETENTION_AGE]);
    }
  }
  return result;
}

/** Snapshot and group snapshot classes take no parameters of ours. */
export function checkNoParameters(params: StringMap, where: string): void {
  const [first] = ours(params);
  if (first) throw invalid(`${where} takes no parameters; unknown key "${first[0]}" (only csi.storage.k8s.io/* keys are accepted and ignored)`);
}

function applyRetention(target: { retention: RetentionChange; canonical: StringMap }, key: string, value: string, where: string): void {
  const text = value.trim();
  if (text.toLowerCase() === NO_LIMIT) {
    if (key === PARAM_RETENTION_SIZE) target.retention.maxBytes = null;
    else target.retention.maxAgeSeconds = null;
    target.canonical[key] = NO_LIMIT;
    return;
  }
  if (key === PARAM_RETENTION_SIZE) {
    const bytes = wrap(() => parseSize(text, `${where} ${key}`));
    if (bytes <= 0) throw invalid(`${where} ${key} must be a positive size (e.g. 10Gi) or "${NO_LIMIT}"`);
    target.retention.maxBytes = bytes;
    target.canonical[key] = String(bytes);
  } else {
    const seconds = parseDuration(text, `${where} ${key}`);
    target.retention.maxAgeSeconds = seconds;
    target.canonical[key] = String(seconds);
  }
}

function parseGranularity(value: string): number {
  const granularity = wrap(() => parseSize(value.trim(), `parameter ${PARAM_GRANULARITY}`));
  if (!isPowerOfTwo(granularity) || granularity < MIN_GRANULARITY || granularity > MAX_GRANULARITY) {
    throw invalid(`parameter ${PARAM_GRANULARITY} "${value}" must be a power of two from 4Ki to 64Mi`);
  }
  return granularity;
}

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** "3600", "90s", "30m", "24h", "7d", "2w" or a sum like "1h30m", as whole seconds > 0. */
export function parseDuration(text: string, what: string): number {
  const whole = /^\d+$/.test(text) ? `${text}s` : text;
  if (!/^(\d+[smhdw])+$/.test(whole)) {
    throw invalid(`malformed ${what} "${text}": use seconds or a duration such as 90m, 24h, 7d or 1h30m`);
  }
  let seconds = 0;
  for (const [, count, unit] of whole.matchAll(/(\d+)([smhdw])/g)) seconds += Number(count) * DURATION_UNITS[unit!]!;
  if (!Number.isSafeInteger(seconds) || seconds <= 0) throw invalid(`${what} "${text}" must be a positive duration`);
  return seconds;
}

/** Applies a change to a volume's current policy; absent fields keep their value. */
export function applyRetentionChange(current: RetentionPolicy, change: RetentionChange): RetentionPolicy {
  const next: RetentionPolicy = { ...current };
  if (change.maxBytes === null) delete next.maxBytes;
  else if (change.maxBytes !== undefined) next.maxBytes = change.maxBytes;
  if (change.maxAgeSeconds === null) delete next.maxAgeSeconds;
  else if (change.maxAgeSeconds !== undefined) next.maxAgeSeconds = change.maxAgeSeconds;
  return next;
}

function wrap<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof TidemarkError) throw invalid(err.message);
    throw err;
  }
}
