import { invalid } from './errors.js';
import type { AccessModeName, VolumeCapability } from './messages.js';
import { FS_TYPES, isFsType } from './params.js';

/**
 * A tidemark volume lives on one node and is served to that node only, so it can be used
 * read-write or read-only there and nowhere else. The alpha SINGLE_NODE_*_WRITER modes are
 * not accepted because the SINGLE_NODE_MULTI_WRITER capability is not advertised.
 */
const SUPPORTED_MODES: readonly AccessModeName[] = ['SINGLE_NODE_WRITER', 'SINGLE_NODE_READER_ONLY'];

/** A required part of the capability is missing: the request is malformed. */
export function malformedCapability(capability: VolumeCapability | null | undefined): string | undefined {
  if (!capability) return 'a volume capability is empty';
  if (!capability.accessMode) return 'a volume capability has no access_mode';
  if (capability.accessType !== 'block' && capability.accessType !== 'mount') return 'a volume capability names neither block nor mount access';
  return undefined;
}

/** The capability is well formed but tidemark cannot provide it; undefined when it can. */
export function unsupportedCapability(capability: VolumeCapability, fsType?: string): string | undefined {
  const mode = capability.accessMode?.mode ?? 'UNKNOWN';
  if (!SUPPORTED_MODES.includes(mode)) {
    return `access mode ${mode} is not supported: tidemark volumes live on one node; use ${SUPPORTED_MODES.join(' or ')}`;
  }
  if (capability.accessType === 'mount') {
    const wanted = capability.mount?.fsType ?? '';
    if (wanted && !isFsType(wanted)) return `filesystem type "${wanted}" is not supported; use ${FS_TYPES.join(' or ')}`;
    if (wanted && fsType && wanted !== fsType) return `the volume is formatted as ${fsType}, not ${wanted}`;
  }
  return undefined;
}

/** For calls that must refuse any capability tidemark cannot serve (CreateVolume, expand). */
export function requireSupported(capabilities: VolumeCapability[], fsType?: string): void {
  if (capabilities.length === 0) throw invalid('volume_capabilities must name at least one capability');
  for (const capability of capabilities) {
    const problem = malformedCapability(capability) ?? unsupportedCapability(capability, fsType);
    if (problem) throw invalid(problem);
  }
}

/** The filesystem types that mount capabilities ask for, without duplicates. */
export function requestedFsTypes(capabilities: VolumeCapability[]): string[] {
  const types = capabilities.filter((c) => c.accessType === 'mount' && c.mount?.fsType).map((c) => c.mount!.fsType);
  return [...new Set(types)];
}
