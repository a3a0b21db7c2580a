import { createHash, randomBytes } from 'node:crypto';
import { invalid } from './errors.js';
import type { Topology } from './messages.js';

export const DRIVER_NAME = 'csi.tidemark.dev';
export const TOPOLOGY_KEY = 'topology.tidemark.dev/node';

/** What the engine accepts as a volume or snapshot name (src/engine/names.ts). */
const ENGINE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}$/;
/** CSI names used as they are: engine-safe, not starting with "_" (reserved below), short. */
const LITERAL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** Longer names are hashed, so that a handle (node + volume + snapshot) stays near 128 bytes. */
const LITERAL_MAX = 48;
const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

const GROUP_MEMBER = /^_g[0-9a-f]{32}$/;
const TEMPORARY = /^_t[0-9a-f]{32}$/;

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex').slice(0, 32);

/**
 * The engine name for a CSI volume or snapshot name. Kubernetes names ("pvc-<uid>",
 * "snapshot-<uid>") pass unchanged, so the CLI shows the names users know; anything else
 * becomes "_h" and a hash of the name. Literal names never start with "_", so the two
 * forms cannot collide, and "_g"/"_t" stay free for the names below.
 */
export function engineNameFor(csiName: string): string {
  if (csiName.length <= LITERAL_MAX && LITERAL_NAME.test(csiName)) return csiName;
  return `_h${digest(csiName)}`;
}

/** The engine snapshot name shared by every member of one group snapshot. */
export function groupNameFor(csiName: string): string {
  return `_g${digest(csiName)}`;
}

export function isGroupMember(snapshot: string): boolean {
  return GROUP_MEMBER.test(snapshot);
}

/** A snapshot the CSI layer takes only for the length of one call (clones). */
export function temporarySnapshotName(): string {
  return `_t${randomBytes(16).toString('hex')}`;
}

export function isTemporary(snapshot: string): boolean {
  return TEMPORARY.test(snapshot);
}

/** Snapshots that are no CSI snapshot: the engine's own ("~...") and the CSI layer's temporary ones. */
export function isHiddenSnapshot(snapshot: string): boolean {
  return snapshot.startsWith('~') || isTemporary(snapshot);
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * Handles name the node, because volumes and snapshots live on one node only:
 *
 *   volume          <nodeId>:<volume>
 *   snapshot        <nodeId>:<volume>:<snapshot>
 *   group snapshot  <nodeId>:<group>          (group is "_g" + 32 hex digits)
 *
 * where the names are engine names. A handle that is malformed or names another node parses
 * to a reason instead; callers answer NOT_FOUND (or OK for deletes), as the spec asks for an
 * id that names nothing here.
 */
export class Handles {
  constructor(readonly nodeId: string) {
    if (!NODE_ID.test(nodeId)) {
      throw invalid(`node id "${nodeId}" must be 1 to 253 letters, digits, ".", "_" or "-" (no ":", which separates the parts of a handle)`);
    }
  }

  volumeId(volume: string): string {
    return `${this.nodeId}:${volume}`;
  }

  snapshotId(volume: string, snapshot: string): string {
    return `${this.nodeId}:${volume}:${snapshot}`;
  }

  groupSnapshotId(group: string): string {
    return `${this.nodeId}:${group}`;
  }

  topology(): Topology {
    return { segments: { [TOPOLOGY_KEY]: this.nodeId } };
  }

  /** True when a topology names this node. Other keys are not ours to judge. */
  isThisNode(topology: Topology): boolean {
    return topology.segments[TOPOLOGY_KEY] === this.nodeId;
  }

  parseVolumeId(id: string): Parsed<string> {
    const parts = this.split(id, 2, 'volume');
    if (!parts.ok) return parts;
    return { ok: true, value: parts.value[1]! };
  }

  parseSnapshotId(id: string): Parsed<{ volume: string; snapshot: string }> {
    const parts = this.split(id, 3, 'snapshot');
    if (!parts.ok) return parts;
    return { ok: true, value: { volume: parts.value[1]!, snapshot: parts.value[2]! } };
  }

  parseGroupSnapshotId(id: string): Parsed<string> {
    const parts = this.split(id, 2, 'group snapshot');
    if (!parts.ok) return parts;
    const group = parts.value[1]!;
    if (!isGroupMember(group)) return { ok: false, reason: `"${id}" is not a tidemark group snapshot id (<node>:_g<32 hex digits>)` };
    return { ok: true, value: group };
  }

  private split(id: string, count: number, kind: string): Parsed<string[]> {
    const parts = id.split(':');
    if (parts.length !== count || !parts.every((part) => ENGINE_NAME.test(part))) {
      const shape = count === 2 ? '<node>:<volume>' : '<node>:<volume>:<snapshot>';
      return { ok: false, reason: `"${id}" is not a tidemark ${kind} id (${shape})` };
    }
    if (parts[0] !== this.nodeId) {
      return { ok: false, reason: `${kind} "${id}" lives on node "${parts[0]}", not on this node "${this.nodeId}"` };
    }
    return { ok: true, value: parts };
  }
}
