/**
 * Short names for the csi.v1 message types, which are generated from csi.proto into
 * ./generated/ by hack/gen-types.sh (`npm run gen:types`; never edit those files by hand).
 * The generator was given the options the daemon loads the proto with (PROTO_LOADER_OPTIONS
 * in src/util/grpc.ts), so each message comes in two shapes:
 *
 * - `X__Output`, what @grpc/proto-loader hands a handler: every field present (absent scalars
 *   filled in with their zero value, absent messages as null), int64 as decimal strings, enums
 *   as names, the member of a oneof named by a virtual field (`accessType`). A request is
 *   named here by that shape.
 * - `X`, what protobufjs accepts to encode: every field optional, int64 as a number or a
 *   string. A response, and a message built to go into one, is named here by that shape.
 *
 * Messages that are both built and read back here without an int64 field among them
 * (Topology, VolumeHealth) are named by the complete `__Output` shape, which fits either use.
 * Nothing here describes a message by hand: a field added to csi.proto appears after
 * regenerating, and test/hack/gen-types.test.ts fails while ./generated/ is stale.
 */

import type { CreateVolumeRequest__Output } from './generated/csi/v1/CreateVolumeRequest.js';
import type { GetMetadataAllocatedResponse } from './generated/csi/v1/GetMetadataAllocatedResponse.js';
import type { GetMetadataDeltaResponse } from './generated/csi/v1/GetMetadataDeltaResponse.js';

// ---- services ------------------------------------------------------------------------------

// The handlers each service's methods must have: the services are checked against them.
export type { IdentityHandlers } from './generated/csi/v1/Identity.js';
export type { ControllerHandlers } from './generated/csi/v1/Controller.js';
export type { GroupControllerHandlers } from './generated/csi/v1/GroupController.js';
export type { SnapshotMetadataHandlers } from './generated/csi/v1/SnapshotMetadata.js';
export type { NodeHandlers } from './generated/csi/v1/Node.js';

// ---- shared --------------------------------------------------------------------------------

export type { CapacityRange__Output as CapacityRange } from './generated/csi/v1/CapacityRange.js';
export type { Topology__Output as Topology } from './generated/csi/v1/Topology.js';
export type { TopologyRequirement__Output as TopologyRequirement } from './generated/csi/v1/TopologyRequirement.js';
export type {
  VolumeCapability__Output as VolumeCapability,
  _csi_v1_VolumeCapability_AccessMode_Mode__Output as AccessModeName,
} from './generated/csi/v1/VolumeCapability.js';
export type { Volume } from './generated/csi/v1/Volume.js';
export type { VolumeContentSource } from './generated/csi/v1/VolumeContentSource.js';
export type { Snapshot } from './generated/csi/v1/Snapshot.js';
export type { Timestamp } from './generated/google/protobuf/Timestamp.js';
export type { _csi_v1_ListVolumesResponse_VolumeStatus as VolumeStatus } from './generated/csi/v1/ListVolumesResponse.js';
export type {
  VolumeHealth__Output as VolumeHealth,
  _csi_v1_VolumeHealth_VolumeHealthEntry__Output as VolumeHealthEntry,
} from './generated/csi/v1/VolumeHealth.js';

/** A `map<string, string>` field as it arrives (parameters, secrets, volume_context). */
export type StringMap = CreateVolumeRequest__Output['parameters'];

// ---- identity ------------------------------------------------------------------------------

export type { GetPluginInfoRequest__Output as GetPluginInfoRequest } from './generated/csi/v1/GetPluginInfoRequest.js';
export type { GetPluginInfoResponse } from './generated/csi/v1/GetPluginInfoResponse.js';
export type { GetPluginCapabilitiesRequest__Output as GetPluginCapabilitiesRequest } from './generated/csi/v1/GetPluginCapabilitiesRequest.js';
export type { GetPluginCapabilitiesResponse } from './generated/csi/v1/GetPluginCapabilitiesResponse.js';
export type { PluginCapability } from './generated/csi/v1/PluginCapability.js';
export type { ProbeRequest__Output as ProbeRequest } from './generated/csi/v1/ProbeRequest.js';
export type { ProbeResponse } from './generated/csi/v1/ProbeResponse.js';

// ---- controller ----------------------------------------------------------------------------

export type { CreateVolumeRequest__Output as CreateVolumeRequest } from './generated/csi/v1/CreateVolumeRequest.js';
export type { CreateVolumeResponse } from './generated/csi/v1/CreateVolumeResponse.js';
export type { DeleteVolumeRequest__Output as DeleteVolumeRequest } from './generated/csi/v1/DeleteVolumeRequest.js';
export type { DeleteVolumeResponse } from './generated/csi/v1/DeleteVolumeResponse.js';
export type { ValidateVolumeCapabilitiesRequest__Output as ValidateVolumeCapabilitiesRequest } from './generated/csi/v1/ValidateVolumeCapabilitiesRequest.js';
export type { ValidateVolumeCapabilitiesResponse } from './generated/csi/v1/ValidateVolumeCapabilitiesResponse.js';
export type { ListVolumesRequest__Output as ListVolumesRequest } from './generated/csi/v1/ListVolumesRequest.js';
export type { ListVolumesResponse } from './generated/csi/v1/ListVolumesResponse.js';
export type { ControllerListVolumeHealthRequest__Output as ControllerListVolumeHealthRequest } from './generated/csi/v1/ControllerListVolumeHealthRequest.js';
export type { ControllerListVolumeHealthResponse } from './generated/csi/v1/ControllerListVolumeHealthResponse.js';
export type { ControllerGetVolumeHealthRequest__Output as ControllerGetVolumeHealthRequest } from './generated/csi/v1/ControllerGetVolumeHealthRequest.js';
export type { ControllerGetVolumeHealthResponse } from './generated/csi/v1/ControllerGetVolumeHealthResponse.js';
export type { ControllerGetVolumeRequest__Output as ControllerGetVolumeRequest } from './generated/csi/v1/ControllerGetVolumeRequest.js';
export type { ControllerGetVolumeResponse } from './generated/csi/v1/ControllerGetVolumeResponse.js';
export type { ControllerModifyVolumeRequest__Output as ControllerModifyVolumeRequest } from './generated/csi/v1/ControllerModifyVolumeRequest.js';
export type { ControllerModifyVolumeResponse } from './generated/csi/v1/ControllerModifyVolumeResponse.js';
export type { GetCapacityRequest__Output as GetCapacityRequest } from './generated/csi/v1/GetCapacityRequest.js';
export type { GetCapacityResponse } from './generated/csi/v1/GetCapacityResponse.js';
export type { ControllerGetCapabilitiesRequest__Output as ControllerGetCapabilitiesRequest } from './generated/csi/v1/ControllerGetCapabilitiesRequest.js';
export type { ControllerGetCapabilitiesResponse } from './generated/csi/v1/ControllerGetCapabilitiesResponse.js';
export type { _csi_v1_ControllerServiceCapability_RPC_Type__Output as ControllerRpcType } from './generated/csi/v1/ControllerServiceCapability.js';
export type { CreateSnapshotRequest__Output as CreateSnapshotRequest } from './generated/csi/v1/CreateSnapshotRequest.js';
export type { CreateSnapshotResponse } from './generated/csi/v1/CreateSnapshotResponse.js';
export type { DeleteSnapshotRequest__Output as DeleteSnapshotRequest } from './generated/csi/v1/DeleteSnapshotRequest.js';
export type { DeleteSnapshotResponse } from './generated/csi/v1/DeleteSnapshotResponse.js';
export type { ListSnapshotsRequest__Output as ListSnapshotsRequest } from './generated/csi/v1/ListSnapshotsRequest.js';
export type { ListSnapshotsResponse } from './generated/csi/v1/ListSnapshotsResponse.js';
export type { GetSnapshotRequest__Output as GetSnapshotRequest } from './generated/csi/v1/GetSnapshotRequest.js';
export type { GetSnapshotResponse } from './generated/csi/v1/GetSnapshotResponse.js';
export type { ControllerExpandVolumeRequest__Output as ControllerExpandVolumeRequest } from './generated/csi/v1/ControllerExpandVolumeRequest.js';
export type { ControllerExpandVolumeResponse } from './generated/csi/v1/ControllerExpandVolumeResponse.js';

// ---- group controller ----------------------------------------------------------------------

export type { GroupControllerGetCapabilitiesRequest__Output as GroupControllerGetCapabilitiesRequest } from './generated/csi/v1/GroupControllerGetCapabilitiesRequest.js';
export type { GroupControllerGetCapabilitiesResponse } from './generated/csi/v1/GroupControllerGetCapabilitiesResponse.js';
export type { VolumeGroupSnapshot } from './generated/csi/v1/VolumeGroupSnapshot.js';
export type { CreateVolumeGroupSnapshotRequest__Output as CreateVolumeGroupSnapshotRequest } from './generated/csi/v1/CreateVolumeGroupSnapshotRequest.js';
export type { CreateVolumeGroupSnapshotResponse } from './generated/csi/v1/CreateVolumeGroupSnapshotResponse.js';
export type { DeleteVolumeGroupSnapshotRequest__Output as DeleteVolumeGroupSnapshotRequest } from './generated/csi/v1/DeleteVolumeGroupSnapshotRequest.js';
export type { DeleteVolumeGroupSnapshotResponse } from './generated/csi/v1/DeleteVolumeGroupSnapshotResponse.js';
export type { GetVolumeGroupSnapshotRequest__Output as GetVolumeGroupSnapshotRequest } from './generated/csi/v1/GetVolumeGroupSnapshotRequest.js';
export type { GetVolumeGroupSnapshotResponse } from './generated/csi/v1/GetVolumeGroupSnapshotResponse.js';

// ---- snapshot metadata ---------------------------------------------------------------------

export type { BlockMetadata } from './generated/csi/v1/BlockMetadata.js';
export type { GetMetadataAllocatedRequest__Output as GetMetadataAllocatedRequest } from './generated/csi/v1/GetMetadataAllocatedRequest.js';
export type { GetMetadataDeltaRequest__Output as GetMetadataDeltaRequest } from './generated/csi/v1/GetMetadataDeltaRequest.js';

/** Both metadata streams send messages of the same fields; one built here serves either. */
export type MetadataResponse = GetMetadataAllocatedResponse & GetMetadataDeltaResponse;

// ---- node ----------------------------------------------------------------------------------

export type { NodeGetInfoRequest__Output as NodeGetInfoRequest } from './generated/csi/v1/NodeGetInfoRequest.js';
export type { NodeGetInfoResponse } from './generated/csi/v1/NodeGetInfoResponse.js';
export type { NodeGetCapabilitiesRequest__Output as NodeGetCapabilitiesRequest } from './generated/csi/v1/NodeGetCapabilitiesRequest.js';
export type { NodeGetCapabilitiesResponse } from './generated/csi/v1/NodeGetCapabilitiesResponse.js';
export type { _csi_v1_NodeServiceCapability_RPC_Type__Output as NodeRpcType } from './generated/csi/v1/NodeServiceCapability.js';
export type { NodeStageVolumeRequest__Output as NodeStageVolumeRequest } from './generated/csi/v1/NodeStageVolumeRequest.js';
export type { NodeStageVolumeResponse } from './generated/csi/v1/NodeStageVolumeResponse.js';
export type { NodeUnstageVolumeRequest__Output as NodeUnstageVolumeRequest } from './generated/csi/v1/NodeUnstageVolumeRequest.js';
export type { NodeUnstageVolumeResponse } from './generated/csi/v1/NodeUnstageVolumeResponse.js';
export type { NodePublishVolumeRequest__Output as NodePublishVolumeRequest } from './generated/csi/v1/NodePublishVolumeRequest.js';
export type { NodePublishVolumeResponse } from './generated/csi/v1/NodePublishVolumeResponse.js';
export type { NodeUnpublishVolumeRequest__Output as NodeUnpublishVolumeRequest } from './generated/csi/v1/NodeUnpublishVolumeRequest.js';
export type { NodeUnpublishVolumeResponse } from './generated/csi/v1/NodeUnpublishVolumeResponse.js';
export type { NodeGetVolumeStatsRequest__Output as NodeGetVolumeStatsRequest } from './generated/csi/v1/NodeGetVolumeStatsRequest.js';
export type { NodeGetVolumeStatsResponse } from './generated/csi/v1/NodeGetVolumeStatsResponse.js';
export type { NodeGetVolumeHealthRequest__Output as NodeGetVolumeHealthRequest } from './generated/csi/v1/NodeGetVolumeHealthRequest.js';
export type { NodeGetVolumeHealthResponse } from './generated/csi/v1/NodeGetVolumeHealthResponse.js';
export type { NodeGetStorageHealthRequest__Output as NodeGetStorageHealthRequest } from './generated/csi/v1/NodeGetStorageHealthRequest.js';
export type {
  NodeGetStorageHealthResponse,
  _csi_v1_NodeGetStorageHealthResponse_StorageBackendHealth as StorageBackendHealth,
} from './generated/csi/v1/NodeGetStorageHealthResponse.js';
export type { NodeExpandVolumeRequest__Output as NodeExpandVolumeRequest } from './generated/csi/v1/NodeExpandVolumeRequest.js';
export type { NodeExpandVolumeResponse } from './generated/csi/v1/NodeExpandVolumeResponse.js';
