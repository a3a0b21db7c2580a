import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { AdminClient as _tidemark_v1_AdminClient, AdminDefinition as _tidemark_v1_AdminDefinition } from './tidemark/v1/Admin.js';
import type { ClearInterruptedRestoreRequest as _tidemark_v1_ClearInterruptedRestoreRequest, ClearInterruptedRestoreRequest__Output as _tidemark_v1_ClearInterruptedRestoreRequest__Output } from './tidemark/v1/ClearInterruptedRestoreRequest.js';
import type { CreateMarkerRequest as _tidemark_v1_CreateMarkerRequest, CreateMarkerRequest__Output as _tidemark_v1_CreateMarkerRequest__Output } from './tidemark/v1/CreateMarkerRequest.js';
import type { CreateMarkerResponse as _tidemark_v1_CreateMarkerResponse, CreateMarkerResponse__Output as _tidemark_v1_CreateMarkerResponse__Output } from './tidemark/v1/CreateMarkerResponse.js';
import type { CreateSnapshotRequest as _tidemark_v1_CreateSnapshotRequest, CreateSnapshotRequest__Output as _tidemark_v1_CreateSnapshotRequest__Output } from './tidemark/v1/CreateSnapshotRequest.js';
import type { CreateVolumeRequest as _tidemark_v1_CreateVolumeRequest, CreateVolumeRequest__Output as _tidemark_v1_CreateVolumeRequest__Output } from './tidemark/v1/CreateVolumeRequest.js';
import type { DeleteSnapshotRequest as _tidemark_v1_DeleteSnapshotRequest, DeleteSnapshotRequest__Output as _tidemark_v1_DeleteSnapshotRequest__Output } from './tidemark/v1/DeleteSnapshotRequest.js';
import type { DeleteSnapshotResponse as _tidemark_v1_DeleteSnapshotResponse, DeleteSnapshotResponse__Output as _tidemark_v1_DeleteSnapshotResponse__Output } from './tidemark/v1/DeleteSnapshotResponse.js';
import type { DeleteVolumeRequest as _tidemark_v1_DeleteVolumeRequest, DeleteVolumeRequest__Output as _tidemark_v1_DeleteVolumeRequest__Output } from './tidemark/v1/DeleteVolumeRequest.js';
import type { DeleteVolumeResponse as _tidemark_v1_DeleteVolumeResponse, DeleteVolumeResponse__Output as _tidemark_v1_DeleteVolumeResponse__Output } from './tidemark/v1/DeleteVolumeResponse.js';
import type { DiffRequest as _tidemark_v1_DiffRequest, DiffRequest__Output as _tidemark_v1_DiffRequest__Output } from './tidemark/v1/DiffRequest.js';
import type { DiffResponse as _tidemark_v1_DiffResponse, DiffResponse__Output as _tidemark_v1_DiffResponse__Output } from './tidemark/v1/DiffResponse.js';
import type { Extent as _tidemark_v1_Extent, Extent__Output as _tidemark_v1_Extent__Output } from './tidemark/v1/Extent.js';
import type { FlushVolumeRequest as _tidemark_v1_FlushVolumeRequest, FlushVolumeRequest__Output as _tidemark_v1_FlushVolumeRequest__Output } from './tidemark/v1/FlushVolumeRequest.js';
import type { FlushVolumeResponse as _tidemark_v1_FlushVolumeResponse, FlushVolumeResponse__Output as _tidemark_v1_FlushVolumeResponse__Output } from './tidemark/v1/FlushVolumeResponse.js';
import type { GetStatusRequest as _tidemark_v1_GetStatusRequest, GetStatusRequest__Output as _tidemark_v1_GetStatusRequest__Output } from './tidemark/v1/GetStatusRequest.js';
import type { GetVolumeRequest as _tidemark_v1_GetVolumeRequest, GetVolumeRequest__Output as _tidemark_v1_GetVolumeRequest__Output } from './tidemark/v1/GetVolumeRequest.js';
import type { InterruptedRestore as _tidemark_v1_InterruptedRestore, InterruptedRestore__Output as _tidemark_v1_InterruptedRestore__Output } from './tidemark/v1/InterruptedRestore.js';
import type { ListMarkersRequest as _tidemark_v1_ListMarkersRequest, ListMarkersRequest__Output as _tidemark_v1_ListMarkersRequest__Output } from './tidemark/v1/ListMarkersRequest.js';
import type { ListMarkersResponse as _tidemark_v1_ListMarkersResponse, ListMarkersResponse__Output as _tidemark_v1_ListMarkersResponse__Output } from './tidemark/v1/ListMarkersResponse.js';
import type { ListSnapshotsRequest as _tidemark_v1_ListSnapshotsRequest, ListSnapshotsRequest__Output as _tidemark_v1_ListSnapshotsRequest__Output } from './tidemark/v1/ListSnapshotsRequest.js';
import type { ListSnapshotsResponse as _tidemark_v1_ListSnapshotsResponse, ListSnapshotsResponse__Output as _tidemark_v1_ListSnapshotsResponse__Output } from './tidemark/v1/ListSnapshotsResponse.js';
import type { ListVolumesRequest as _tidemark_v1_ListVolumesRequest, ListVolumesRequest__Output as _tidemark_v1_ListVolumesRequest__Output } from './tidemark/v1/ListVolumesRequest.js';
import type { ListVolumesResponse as _tidemark_v1_ListVolumesResponse, ListVolumesResponse__Output as _tidemark_v1_ListVolumesResponse__Output } from './tidemark/v1/ListVolumesResponse.js';
import type { Marker as _tidemark_v1_Marker, Marker__Output as _tidemark_v1_Marker__Output } from './tidemark/v1/Marker.js';
import type { ReadVolumeChunk as _tidemark_v1_ReadVolumeChunk, ReadVolumeChunk__Output as _tidemark_v1_ReadVolumeChunk__Output } from './tidemark/v1/ReadVolumeChunk.js';
import type { ReadVolumeRequest as _tidemark_v1_ReadVolumeRequest, ReadVolumeRequest__Output as _tidemark_v1_ReadVolumeRequest__Output } from './tidemark/v1/ReadVolumeRequest.js';
import type { RestoreEvent as _tidemark_v1_RestoreEvent, RestoreEvent__Output as _tidemark_v1_RestoreEvent__Output } from './tidemark/v1/RestoreEvent.js';
import type { RestoreProgress as _tidemark_v1_RestoreProgress, RestoreProgress__Output as _tidemark_v1_RestoreProgress__Output } from './tidemark/v1/RestoreProgress.js';
import type { RestoreRequest as _tidemark_v1_RestoreRequest, RestoreRequest__Output as _tidemark_v1_RestoreRequest__Output } from './tidemark/v1/RestoreRequest.js';
import type { RestoreResult as _tidemark_v1_RestoreResult, RestoreResult__Output as _tidemark_v1_RestoreResult__Output } from './tidemark/v1/RestoreResult.js';
import type { Retention as _tidemark_v1_Retention, Retention__Output as _tidemark_v1_Retention__Output } from './tidemark/v1/Retention.js';
import type { SetRetentionRequest as _tidemark_v1_SetRetentionRequest, SetRetentionRequest__Output as _tidemark_v1_SetRetentionRequest__Output } from './tidemark/v1/SetRetentionRequest.js';
import type { Snapshot as _tidemark_v1_Snapshot, Snapshot__Output as _tidemark_v1_Snapshot__Output } from './tidemark/v1/Snapshot.js';
import type { Status as _tidemark_v1_Status, Status__Output as _tidemark_v1_Status__Output } from './tidemark/v1/Status.js';
import type { Volume as _tidemark_v1_Volume, Volume__Output as _tidemark_v1_Volume__Output } from './tidemark/v1/Volume.js';
import type { WriteVolumeRequest as _tidemark_v1_WriteVolumeRequest, WriteVolumeRequest__Output as _tidemark_v1_WriteVolumeRequest__Output } from './tidemark/v1/WriteVolumeRequest.js';
import type { WriteVolumeResponse as _tidemark_v1_WriteVolumeResponse, WriteVolumeResponse__Output as _tidemark_v1_WriteVolumeResponse__Output } from './tidemark/v1/WriteVolumeResponse.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  tidemark: {
    v1: {
      Admin: SubtypeConstructor<typeof grpc.Client, _tidemark_v1_AdminClient> & { service: _tidemark_v1_AdminDefinition }
      ClearInterruptedRestoreRequest: MessageTypeDefinition<_tidemark_v1_ClearInterruptedRestoreRequest, _tidemark_v1_ClearInterruptedRestoreRequest__Output>
      CreateMarkerRequest: MessageTypeDefinition<_tidemark_v1_CreateMarkerRequest, _tidemark_v1_CreateMarkerRequest__Output>
      CreateMarkerResponse: MessageTypeDefinition<_tidemark_v1_CreateMarkerResponse, _tidemark_v1_CreateMarkerResponse__Output>
      CreateSnapshotRequest: MessageTypeDefinition<_tidemark_v1_CreateSnapshotRequest, _tidemark_v1_CreateSnapshotRequest__Output>
      CreateVolumeRequest: MessageTypeDefinition<_tidemark_v1_CreateVolumeRequest, _tidemark_v1_CreateVolumeRequest__Output>
      DeleteSnapshotRequest: MessageTypeDefinition<_tidemark_v1_DeleteSnapshotRequest, _tidemark_v1_DeleteSnapshotRequest__Output>
      DeleteSnapshotResponse: MessageTypeDefinition<_tidemark_v1_DeleteSnapshotResponse, _tidemark_v1_DeleteSnapshotResponse__Output>
      DeleteVolumeRequest: MessageTypeDefinition<_tidemark_v1_DeleteVolumeRequest, _tidemark_v1_DeleteVolumeRequest__Output>
      DeleteVolumeResponse: MessageTypeDefinition<_tidemark_v1_DeleteVolumeResponse, _tidemark_v1_DeleteVolumeResponse__Output>
      DiffRequest: MessageTypeDefinition<_tidemark_v1_DiffRequest, _tidemark_v1_DiffRequest__Output>
      DiffResponse: MessageTypeDefinition<_tidemark_v1_DiffResponse, _tidemark_v1_DiffResponse__Output>
      Extent: MessageTypeDefinition<_tidemark_v1_Extent, _tidemark_v1_Extent__Output>
      FlushVolumeRequest: MessageTypeDefinition<_tidemark_v1_FlushVolumeRequest, _tidemark_v1_FlushVolumeRequest__Output>
      FlushVolumeResponse: MessageTypeDefinition<_tidemark_v1_FlushVolumeResponse, _tidemark_v1_FlushVolumeResponse__Output>
      GetStatusRequest: MessageTypeDefinition<_tidemark_v1_GetStatusRequest, _tidemark_v1_GetStatusRequest__Output>
      GetVolumeRequest: MessageTypeDefinition<_tidemark_v1_GetVolumeRequest, _tidemark_v1_GetVolumeRequest__Output>
      InterruptedRestore: MessageTypeDefinition<_tidemark_v1_InterruptedRestore, _tidemark_v1_InterruptedRestore__Output>
      ListMarkersRequest: MessageTypeDefinition<_tidemark_v1_ListMarkersRequest, _tidemark_v1_ListMarkersRequest__Output>
      ListMarkersResponse: MessageTypeDefinition<_tidemark_v1_ListMarkersResponse, _tidemark_v1_ListMarkersResponse__Output>
      ListSnapshotsRequest: MessageTypeDefinition<_tidemark_v1_ListSnapshotsRequest, _tidemark_v1_ListSnapshotsRequest__Output>
      ListSnapshotsResponse: MessageTypeDefinition<_tidemark_v1_ListSnapshotsResponse, _tidemark_v1_ListSnapshotsResponse__Output>
      ListVolumesRequest: MessageTypeDefinition<_tidemark_v1_ListVolumesRequest, _tidemark_v1_ListVolumesRequest__Output>
      ListVolumesResponse: MessageTypeDefinition<_tidemark_v1_ListVolumesResponse, _tidemark_v1_ListVolumesResponse__Output>
      Marker: MessageTypeDefinition<_tidemark_v1_Marker, _tidemark_v1_Marker__Output>
      ReadVolumeChunk: MessageTypeDefinition<_tidemark_v1_ReadVolumeChunk, _tidemark_v1_ReadVolumeChunk__Output>
      ReadVolumeRequest: MessageTypeDefinition<_tidemark_v1_ReadVolumeRequest, _tidemark_v1_ReadVolumeRequest__Output>
      RestoreEvent: MessageTypeDefinition<_tidemark_v1_RestoreEvent, _tidemark_v1_RestoreEvent__Output>
      RestoreProgress: MessageTypeDefinition<_tidemark_v1_RestoreProgress, _tidemark_v1_RestoreProgress__Output>
      RestoreRequest: MessageTypeDefinition<_tidemark_v1_RestoreRequest, _tidemark_v1_RestoreRequest__Output>
      RestoreResult: MessageTypeDefinition<_tidemark_v1_RestoreResult, _tidemark_v1_RestoreResult__Output>
      Retention: MessageTypeDefinition<_tidemark_v1_Retention, _tidemark_v1_Retention__Output>
      SetRetentionRequest: MessageTypeDefinition<_tidemark_v1_SetRetentionRequest, _tidemark_v1_SetRetentionRequest__Output>
      Snapshot: MessageTypeDefinition<_tidemark_v1_Snapshot, _tidemark_v1_Snapshot__Output>
      Status: MessageTypeDefinition<_tidemark_v1_Status, _tidemark_v1_Status__Output>
      Volume: MessageTypeDefinition<_tidemark_v1_Volume, _tidemark_v1_Volume__Output>
      WriteVolumeRequest: MessageTypeDefinition<_tidemark_v1_WriteVolumeRequest, _tidemark_v1_WriteVolumeRequest__Output>
      WriteVolumeResponse: MessageTypeDefinition<_tidemark_v1_WriteVolumeResponse, _tidemark_v1_WriteVolumeResponse__Output>
    }
  }
}

