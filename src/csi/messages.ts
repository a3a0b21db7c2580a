/**
 * The shapes of csi.v1 messages as @grpc/proto-loader hands them over with PROTO_LOADER_OPTIONS
 * (camelCase names, int64 as decimal strings, enums as names, defaults filled in, absent
 * messages as null, oneof members named by a virtual field). Only what tidemark reads or
 * writes is typed. Outgoing int64 fields may be numbers: protobufjs encodes either.
 */

export type Int64In = string;
export type Int64Out = number | string;
export type StringMap = Record<string, string>;

export interface Timestamp {
  seconds: Int64Out;
  nanos: number;
}

export interface BoolValue {
  value: boolean;
}

export interface Int64Value {
  value: Int64Out;
}

// ---- shared ------------------------------------------------------------------------------

export type AccessModeName =
  | 'UNKNOWN'
  | 'SINGLE_NODE_WRITER'
  | 'SINGLE_NODE_READER_ONLY'
  | 'MULTI_NODE_READER_ONLY'
  | 'MULTI_NODE_SINGLE_WRITER'
  | 'MULTI_NODE_MULTI_WRITER'
  | 'SINGLE_NODE_SINGLE_WRITER'
  | 'SINGLE_NODE_MULTI_WRITER';

export interface MountVolume {
  fsType: string;
  mountFlags: string[];
  volumeMountGroup: string;
}

export interface VolumeCapability {
  block?: Record<string, never> | null;
  mount?: MountVolume | null;
  accessType?: 'block' | 'mount';
  accessMode: { mode: AccessModeName } | null;
}

export interface CapacityRange {
  requiredBytes: Int64In;
  limitBytes: Int64In;
}

export interface Topology {
  segments: StringMap;
}

export interface TopologyRequirement {
  requisite: Topology[];
  preferred: Topology[];
}

export interface VolumeContentSource {
  snapshot?: { snapshotId: string } | null;
  volume?: { volumeId: string } | null;
  type?: 'snapshot' | 'volume';
}

export interface Volume {
  capacityBytes: Int64Out;
  volumeId: string;
  volumeContext: StringMap;
  contentSource: VolumeContentSource | null;
  accessibleTopology: Topology[];
}

export interface Snapshot {
  sizeBytes: Int64Out;
  snapshotId: string;
  sourceVolumeId: string;
  creationTime: Timestamp;
  readyToUse: boolean;
  groupSnapshotId: string;
  accessibleTopology: Topology[];
}

export interface VolumeStatus {
  publishedNodeIds: string[];
}

// ---- identity ----------------------------------------------------------------------------

export interface GetPluginInfoResponse {
  name: string;
  vendorVersion: string;
  manifest: StringMap;
}

export type PluginServiceType =
  | 'CONTROLLER_SERVICE'
  | 'VOLUME_ACCESSIBILITY_CONSTRAINTS'
  | 'GROUP_CONTROLLER_SERVICE'
  | 'SNAPSHOT_METADATA_SERVICE'
  | 'SNAPSHOT_ACCESSIBILITY_CONSTRAINTS';

export type PluginCapability = { service: { type: PluginServiceType } } | { volumeExpansion: { type: 'ONLINE' | 'OFFLINE' } };

export interface GetPluginCapabilitiesResponse {
  capabilities: PluginCapability[];
}

export interface ProbeResponse {
  ready: BoolValue;
}

// ---- controller --------------------------------------------------------------------------

export interface CreateVolumeRequest {
  name: string;
  capacityRange: CapacityRange | null;
  volumeCapabilities: VolumeCapability[];
  parameters: StringMap;
  secrets: StringMap;
  volumeContentSource: VolumeContentSource | null;
  accessibilityRequirements: TopologyRequirement | null;
  mutableParameters: StringMap;
}

export interface CreateVolumeResponse {
  volume: Volume;
}

export interface DeleteVolumeRequest {
  volumeId: string;
  secrets: StringMap;
}

export interface ValidateVolumeCapabilitiesRequest {
  volumeId: string;
  volumeContext: StringMap;
  volumeCapabilities: VolumeCapability[];
  parameters: StringMap;
  secrets: StringMap;
  mutableParameters: StringMap;
}

export interface ValidateVolumeCapabilitiesResponse {
  confirmed: {
    volumeContext: StringMap;
    volumeCapabilities: VolumeCapability[];
    parameters: StringMap;
    mutableParameters: StringMap;
  } | null;
  message: string;
}

export interface ListVolumesRequest {
  maxEntries: number;
  startingToken: string;
}

export interface ListVolumesResponse {
  entries: { volume: Volume; status: VolumeStatus }[];
  nextToken: string;
}

export interface VolumeHealthEntry {
  status: 'DEGRADED' | 'INACCESSIBLE' | 'DATA_LOSS';
  reason: string;
  message: string;
}

export interface VolumeHealth {
  volumeId: string;
  healthStatuses: VolumeHealthEntry[];
}

export interface ControllerListVolumeHealthRequest {
  maxEntries: number;
  startingToken: string;
  secrets: StringMap;
}

export interface ControllerListVolumeHealthResponse {
  entries: VolumeHealth[];
  nextToken: string;
}

export interface ControllerGetVolumeHealthRequest {
  volumeId: string;
  secrets: StringMap;
}

export interface ControllerGetVolumeHealthResponse {
  volumeHealth: VolumeHealth;
}

export interface ControllerGetVolumeRequest {
  volumeId: string;
}

export interface ControllerGetVolumeResponse {
  volume: Volume;
  status: VolumeStatus;
}

export interface ControllerModifyVolumeRequest {
  volumeId: string;
  secrets: StringMap;
  mutableParameters: StringMap;
}

export interface GetCapacityRequest {
  volumeCapabilities: VolumeCapability[];
  parameters: StringMap;
  accessibleTopology: Topology | null;
}

export interface GetCapacityResponse {
  availableCapacity: Int64Out;
  maximumVolumeSize: Int64Value | null;
  minimumVolumeSize: Int64Value | null;
}

export type ControllerRpcType =
  | 'CREATE_DELETE_VOLUME'
  | 'LIST_VOLUMES'
  | 'GET_CAPACITY'
  | 'CREATE_DELETE_SNAPSHOT'
  | 'LIST_SNAPSHOTS'
  | 'CLONE_VOLUME'
  | 'EXPAND_VOLUME'
  | 'GET_VOLUME'
  | 'MODIFY_VOLUME'
  | 'GET_SNAPSHOT'
  | 'GET_VOLUME_HEALTH'
  | 'LIST_VOLUME_HEALTH';

export interface ControllerGetCapabilitiesResponse {
  capabilities: { rpc: { type: ControllerRpcType } }[];
}

export interface CreateSnapshotRequest {
  sourceVolumeId: string;
  name: string;
  secrets: StringMap;
  parameters: StringMap;
  accessibilityRequirements: TopologyRequirement | null;
}

export interface CreateSnapshotResponse {
  snapshot: Snapshot;
}

export interface DeleteSnapshotRequest {
  snapshotId: string;
  secrets: StringMap;
}

export interface ListSnapshotsRequest {
  maxEntries: number;
  startingToken: string;
  sourceVolumeId: string;
  snapshotId: string;
  secrets: StringMap;
}

export interface ListSnapshotsResponse {
  entries: { snapshot: Snapshot }[];
  nextToken: string;
}

export interface GetSnapshotRequest {
  snapshotId: string;
  secrets: StringMap;
}

export interface GetSnapshotResponse {
  snapshot: Snapshot;
}

export interface ControllerExpandVolumeRequest {
  volumeId: string;
  capacityRange: CapacityRange | null;
  secrets: StringMap;
  volumeCapability: VolumeCapability | null;
}

export interface ControllerExpandVolumeResponse {
  capacityBytes: Int64Out;
  nodeExpansionRequired: boolean;
}

// ---- group controller --------------------------------------------------------------------

export interface GroupControllerGetCapabilitiesResponse {
  capabilities: { rpc: { type: 'CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT' } }[];
}

export interface VolumeGroupSnapshot {
  groupSnapshotId: string;
  snapshots: Snapshot[];
  creationTime: Timestamp;
  readyToUse: boolean;
}

export interface CreateVolumeGroupSnapshotRequest {
  name: string;
  sourceVolumeIds: string[];
  secrets: StringMap;
  parameters: StringMap;
}

export interface CreateVolumeGroupSnapshotResponse {
  groupSnapshot: VolumeGroupSnapshot;
}

export interface DeleteVolumeGroupSnapshotRequest {
  groupSnapshotId: string;
  snapshotIds: string[];
  secrets: StringMap;
}

export interface GetVolumeGroupSnapshotRequest {
  groupSnapshotId: string;
  snapshotIds: string[];
  secrets: StringMap;
}

export interface GetVolumeGroupSnapshotResponse {
  groupSnapshot: VolumeGroupSnapshot;
}

// ---- snapshot metadata -------------------------------------------------------------------

export interface BlockMetadata {
  byteOffset: Int64Out;
  sizeBytes: Int64Out;
}

export type BlockMetadataType = 'FIXED_LENGTH' | 'VARIABLE_LENGTH';

export interface GetMetadataAllocatedRequest {
  snapshotId: string;
  startingOffset: Int64In;
  maxResults: number;
  secrets: StringMap;
}

export interface GetMetadataDeltaRequest {
  baseSnapshotId: string;
  targetSnapshotId: string;
  startingOffset: Int64In;
  maxResults: number;
  secrets: StringMap;
}

export interface MetadataResponse {
  blockMetadataType: BlockMetadataType;
  volumeCapacityBytes: Int64Out;
  blockMetadata: BlockMetadata[];
}

// ---- node --------------------------------------------------------------------------------

export interface NodeGetInfoResponse {
  nodeId: string;
  maxVolumesPerNode: Int64Out;
  accessibleTopology: Topology;
}

export interface NodeGetCapabilitiesResponse {
  capabilities: { rpc: { type: string } }[];
}

export interface NodeUnpublishVolumeRequest {
  volumeId: string;
  targetPath: string;
}

export interface NodeStageVolumeRequest {
  volumeId: string;
  publishContext: StringMap;
  stagingTargetPath: string;
  volumeCapability: VolumeCapability | null;
  secrets: StringMap;
  volumeContext: StringMap;
}

export interface NodeUnstageVolumeRequest {
  volumeId: string;
  stagingTargetPath: string;
}

export interface NodePublishVolumeRequest {
  volumeId: string;
  publishContext: StringMap;
  stagingTargetPath: string;
  targetPath: string;
  volumeCapability: VolumeCapability | null;
  readonly: boolean;
  secrets: StringMap;
  volumeContext: StringMap;
}

export interface VolumeUsage {
  available: Int64Out;
  total: Int64Out;
  used: Int64Out;
  unit: 'BYTES' | 'INODES';
}

export interface NodeGetVolumeStatsRequest {
  volumeId: string;
  volumePath: string;
  stagingTargetPath: string;
}

export interface NodeGetVolumeStatsResponse {
  usage: VolumeUsage[];
}

export interface NodeGetVolumeHealthRequest {
  volumeId: string;
  volumePublishPath: string;
  stagingTargetPath: string;
}

export interface NodeGetVolumeHealthResponse {
  volumeHealth: VolumeHealth;
}

export interface StorageBackendHealth {
  status: 'STORAGE_DEGRADED' | 'STORAGE_UNREACHABLE';
  reason: string;
  message: string;
}

export interface NodeGetStorageHealthResponse {
  backendHealth: StorageBackendHealth[];
}

export interface NodeExpandVolumeRequest {
  volumeId: string;
  volumePath: string;
  capacityRange: CapacityRange | null;
  stagingTargetPath: string;
  volumeCapability: VolumeCapability | null;
}

export interface NodeExpandVolumeResponse {
  capacityBytes: Int64Out;
}

export type Empty = Record<string, never>;
