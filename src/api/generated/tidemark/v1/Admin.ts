// Original file: admin.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { ClearInterruptedRestoreRequest as _tidemark_v1_ClearInterruptedRestoreRequest, ClearInterruptedRestoreRequest__Output as _tidemark_v1_ClearInterruptedRestoreRequest__Output } from '../../tidemark/v1/ClearInterruptedRestoreRequest.js';
import type { CreateMarkerRequest as _tidemark_v1_CreateMarkerRequest, CreateMarkerRequest__Output as _tidemark_v1_CreateMarkerRequest__Output } from '../../tidemark/v1/CreateMarkerRequest.js';
import type { CreateMarkerResponse as _tidemark_v1_CreateMarkerResponse, CreateMarkerResponse__Output as _tidemark_v1_CreateMarkerResponse__Output } from '../../tidemark/v1/CreateMarkerResponse.js';
import type { CreateSnapshotRequest as _tidemark_v1_CreateSnapshotRequest, CreateSnapshotRequest__Output as _tidemark_v1_CreateSnapshotRequest__Output } from '../../tidemark/v1/CreateSnapshotRequest.js';
import type { CreateVolumeRequest as _tidemark_v1_CreateVolumeRequest, CreateVolumeRequest__Output as _tidemark_v1_CreateVolumeRequest__Output } from '../../tidemark/v1/CreateVolumeRequest.js';
import type { DeleteSnapshotRequest as _tidemark_v1_DeleteSnapshotRequest, DeleteSnapshotRequest__Output as _tidemark_v1_DeleteSnapshotRequest__Output } from '../../tidemark/v1/DeleteSnapshotRequest.js';
import type { DeleteSnapshotResponse as _tidemark_v1_DeleteSnapshotResponse, DeleteSnapshotResponse__Output as _tidemark_v1_DeleteSnapshotResponse__Output } from '../../tidemark/v1/DeleteSnapshotResponse.js';
import type { DeleteVolumeRequest as _tidemark_v1_DeleteVolumeRequest, DeleteVolumeRequest__Output as _tidemark_v1_DeleteVolumeRequest__Output } from '../../tidemark/v1/DeleteVolumeRequest.js';
import type { DeleteVolumeResponse as _tidemark_v1_DeleteVolumeResponse, DeleteVolumeResponse__Output as _tidemark_v1_DeleteVolumeResponse__Output } from '../../tidemark/v1/DeleteVolumeResponse.js';
import type { DiffRequest as _tidemark_v1_DiffRequest, DiffRequest__Output as _tidemark_v1_DiffRequest__Output } from '../../tidemark/v1/DiffRequest.js';
import type { DiffResponse as _tidemark_v1_DiffResponse, DiffResponse__Output as _tidemark_v1_DiffResponse__Output } from '../../tidemark/v1/DiffResponse.js';
import type { FlushVolumeRequest as _tidemark_v1_FlushVolumeRequest, FlushVolumeRequest__Output as _tidemark_v1_FlushVolumeRequest__Output } from '../../tidemark/v1/FlushVolumeRequest.js';
import type { FlushVolumeResponse as _tidemark_v1_FlushVolumeResponse, FlushVolumeResponse__Output as _tidemark_v1_FlushVolumeResponse__Output } from '../../tidemark/v1/FlushVolumeResponse.js';
import type { GetStatusRequest as _tidemark_v1_GetStatusRequest, GetStatusRequest__Output as _tidemark_v1_GetStatusRequest__Output } from '../../tidemark/v1/GetStatusRequest.js';
import type { GetVolumeRequest as _tidemark_v1_GetVolumeRequest, GetVolumeRequest__Output as _tidemark_v1_GetVolumeRequest__Output } from '../../tidemark/v1/GetVolumeRequest.js';
import type { ListMarkersRequest as _tidemark_v1_ListMarkersRequest, ListMarkersRequest__Output as _tidemark_v1_ListMarkersRequest__Output } from '../../tidemark/v1/ListMarkersRequest.js';
import type { ListMarkersResponse as _tidemark_v1_ListMarkersResponse, ListMarkersResponse__Output as _tidemark_v1_ListMarkersResponse__Output } from '../../tidemark/v1/ListMarkersResponse.js';
import type { ListSnapshotsRequest as _tidemark_v1_ListSnapshotsRequest, ListSnapshotsRequest__Output as _tidemark_v1_ListSnapshotsRequest__Output } from '../../tidemark/v1/ListSnapshotsRequest.js';
import type { ListSnapshotsResponse as _tidemark_v1_ListSnapshotsResponse, ListSnapshotsResponse__Output as _tidemark_v1_ListSnapshotsResponse__Output } from '../../tidemark/v1/ListSnapshotsResponse.js';
import type { ListVolumesRequest as _tidemark_v1_ListVolumesRequest, ListVolumesRequest__Output as _tidemark_v1_ListVolumesRequest__Output } from '../../tidemark/v1/ListVolumesRequest.js';
import type { ListVolumesResponse as _tidemark_v1_ListVolumesResponse, ListVolumesResponse__Output as _tidemark_v1_ListVolumesResponse__Output } from '../../tidemark/v1/ListVolumesResponse.js';
import type { ReadVolumeChunk as _tidemark_v1_ReadVolumeChunk, ReadVolumeChunk__Output as _tidemark_v1_ReadVolumeChunk__Output } from '../../tidemark/v1/ReadVolumeChunk.js';
import type { ReadVolumeRequest as _tidemark_v1_ReadVolumeRequest, ReadVolumeRequest__Output as _tidemark_v1_ReadVolumeRequest__Output } from '../../tidemark/v1/ReadVolumeRequest.js';
import type { RestoreEvent as _tidemark_v1_RestoreEvent, RestoreEvent__Output as _tidemark_v1_RestoreEvent__Output } from '../../tidemark/v1/RestoreEvent.js';
import type { RestoreRequest as _tidemark_v1_RestoreRequest, RestoreRequest__Output as _tidemark_v1_RestoreRequest__Output } from '../../tidemark/v1/RestoreRequest.js';
import type { SetRetentionRequest as _tidemark_v1_SetRetentionRequest, SetRetentionRequest__Output as _tidemark_v1_SetRetentionRequest__Output } from '../../tidemark/v1/SetRetentionRequest.js';
import type { Snapshot as _tidemark_v1_Snapshot, Snapshot__Output as _tidemark_v1_Snapshot__Output } from '../../tidemark/v1/Snapshot.js';
import type { Status as _tidemark_v1_Status, Status__Output as _tidemark_v1_Status__Output } from '../../tidemark/v1/Status.js';
import type { Volume as _tidemark_v1_Volume, Volume__Output as _tidemark_v1_Volume__Output } from '../../tidemark/v1/Volume.js';
import type { WriteVolumeRequest as _tidemark_v1_WriteVolumeRequest, WriteVolumeRequest__Output as _tidemark_v1_WriteVolumeRequest__Output } from '../../tidemark/v1/WriteVolumeRequest.js';
import type { WriteVolumeResponse as _tidemark_v1_WriteVolumeResponse, WriteVolumeResponse__Output as _tidemark_v1_WriteVolumeResponse__Output } from '../../tidemark/v1/WriteVolumeResponse.js';

export interface AdminClient extends grpc.Client {
  ClearInterruptedRestore(argument: _tidemark_v1_ClearInterruptedRestoreRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  ClearInterruptedRestore(argument: _tidemark_v1_ClearInterruptedRestoreRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  ClearInterruptedRestore(argument: _tidemark_v1_ClearInterruptedRestoreRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  ClearInterruptedRestore(argument: _tidemark_v1_ClearInterruptedRestoreRequest, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  clearInterruptedRestore(argument: _tidemark_v1_ClearInterruptedRestoreRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  clearInterruptedRestore(argument: _tidemark_v1_ClearInterruptedRestoreRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  clearInterruptedRestore(argument: _tidemark_v1_ClearInterruptedRestoreRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  clearInterruptedRestore(argument: _tidemark_v1_ClearInterruptedRestoreRequest, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  
  CreateMarker(argument: _tidemark_v1_CreateMarkerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_CreateMarkerResponse__Output>): grpc.ClientUnaryCall;
  CreateMarker(argument: _tidemark_v1_CreateMarkerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_CreateMarkerResponse__Output>): grpc.ClientUnaryCall;
  CreateMarker(argument: _tidemark_v1_CreateMarkerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_CreateMarkerResponse__Output>): grpc.ClientUnaryCall;
  CreateMarker(argument: _tidemark_v1_CreateMarkerRequest, callback: grpc.requestCallback<_tidemark_v1_CreateMarkerResponse__Output>): grpc.ClientUnaryCall;
  createMarker(argument: _tidemark_v1_CreateMarkerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_CreateMarkerResponse__Output>): grpc.ClientUnaryCall;
  createMarker(argument: _tidemark_v1_CreateMarkerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_CreateMarkerResponse__Output>): grpc.ClientUnaryCall;
  createMarker(argument: _tidemark_v1_CreateMarkerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_CreateMarkerResponse__Output>): grpc.ClientUnaryCall;
  createMarker(argument: _tidemark_v1_CreateMarkerRequest, callback: grpc.requestCallback<_tidemark_v1_CreateMarkerResponse__Output>): grpc.ClientUnaryCall;
  
  CreateSnapshot(argument: _tidemark_v1_CreateSnapshotRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Snapshot__Output>): grpc.ClientUnaryCall;
  CreateSnapshot(argument: _tidemark_v1_CreateSnapshotRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_Snapshot__Output>): grpc.ClientUnaryCall;
  CreateSnapshot(argument: _tidemark_v1_CreateSnapshotRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Snapshot__Output>): grpc.ClientUnaryCall;
  CreateSnapshot(argument: _tidemark_v1_CreateSnapshotRequest, callback: grpc.requestCallback<_tidemark_v1_Snapshot__Output>): grpc.ClientUnaryCall;
  createSnapshot(argument: _tidemark_v1_CreateSnapshotRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Snapshot__Output>): grpc.ClientUnaryCall;
  createSnapshot(argument: _tidemark_v1_CreateSnapshotRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_Snapshot__Output>): grpc.ClientUnaryCall;
  createSnapshot(argument: _tidemark_v1_CreateSnapshotRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Snapshot__Output>): grpc.ClientUnaryCall;
  createSnapshot(argument: _tidemark_v1_CreateSnapshotRequest, callback: grpc.requestCallback<_tidemark_v1_Snapshot__Output>): grpc.ClientUnaryCall;
  
  CreateVolume(argument: _tidemark_v1_CreateVolumeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  CreateVolume(argument: _tidemark_v1_CreateVolumeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  CreateVolume(argument: _tidemark_v1_CreateVolumeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  CreateVolume(argument: _tidemark_v1_CreateVolumeRequest, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  createVolume(argument: _tidemark_v1_CreateVolumeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  createVolume(argument: _tidemark_v1_CreateVolumeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  createVolume(argument: _tidemark_v1_CreateVolumeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  createVolume(argument: _tidemark_v1_CreateVolumeRequest, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  
  DeleteSnapshot(argument: _tidemark_v1_DeleteSnapshotRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_DeleteSnapshotResponse__Output>): grpc.ClientUnaryCall;
  DeleteSnapshot(argument: _tidemark_v1_DeleteSnapshotRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_DeleteSnapshotResponse__Output>): grpc.ClientUnaryCall;
  DeleteSnapshot(argument: _tidemark_v1_DeleteSnapshotRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_DeleteSnapshotResponse__Output>): grpc.ClientUnaryCall;
  DeleteSnapshot(argument: _tidemark_v1_DeleteSnapshotRequest, callback: grpc.requestCallback<_tidemark_v1_DeleteSnapshotResponse__Output>): grpc.ClientUnaryCall;
  deleteSnapshot(argument: _tidemark_v1_DeleteSnapshotRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_DeleteSnapshotResponse__Output>): grpc.ClientUnaryCall;
  deleteSnapshot(argument: _tidemark_v1_DeleteSnapshotRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_DeleteSnapshotResponse__Output>): grpc.ClientUnaryCall;
  deleteSnapshot(argument: _tidemark_v1_DeleteSnapshotRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_DeleteSnapshotResponse__Output>): grpc.ClientUnaryCall;
  deleteSnapshot(argument: _tidemark_v1_DeleteSnapshotRequest, callback: grpc.requestCallback<_tidemark_v1_DeleteSnapshotResponse__Output>): grpc.ClientUnaryCall;
  
  DeleteVolume(argument: _tidemark_v1_DeleteVolumeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_DeleteVolumeResponse__Output>): grpc.ClientUnaryCall;
  DeleteVolume(argument: _tidemark_v1_DeleteVolumeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_DeleteVolumeResponse__Output>): grpc.ClientUnaryCall;
  DeleteVolume(argument: _tidemark_v1_DeleteVolumeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_DeleteVolumeResponse__Output>): grpc.ClientUnaryCall;
  DeleteVolume(argument: _tidemark_v1_DeleteVolumeRequest, callback: grpc.requestCallback<_tidemark_v1_DeleteVolumeResponse__Output>): grpc.ClientUnaryCall;
  deleteVolume(argument: _tidemark_v1_DeleteVolumeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_DeleteVolumeResponse__Output>): grpc.ClientUnaryCall;
  deleteVolume(argument: _tidemark_v1_DeleteVolumeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_DeleteVolumeResponse__Output>): grpc.ClientUnaryCall;
  deleteVolume(argument: _tidemark_v1_DeleteVolumeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_DeleteVolumeResponse__Output>): grpc.ClientUnaryCall;
  deleteVolume(argument: _tidemark_v1_DeleteVolumeRequest, callback: grpc.requestCallback<_tidemark_v1_DeleteVolumeResponse__Output>): grpc.ClientUnaryCall;
  
  Diff(argument: _tidemark_v1_DiffRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_DiffResponse__Output>): grpc.ClientUnaryCall;
  Diff(argument: _tidemark_v1_DiffRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_DiffResponse__Output>): grpc.ClientUnaryCall;
  Diff(argument: _tidemark_v1_DiffRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_DiffResponse__Output>): grpc.ClientUnaryCall;
  Diff(argument: _tidemark_v1_DiffRequest, callback: grpc.requestCallback<_tidemark_v1_DiffResponse__Output>): grpc.ClientUnaryCall;
  diff(argument: _tidemark_v1_DiffRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_DiffResponse__Output>): grpc.ClientUnaryCall;
  diff(argument: _tidemark_v1_DiffRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_DiffResponse__Output>): grpc.ClientUnaryCall;
  diff(argument: _tidemark_v1_DiffRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_DiffResponse__Output>): grpc.ClientUnaryCall;
  diff(argument: _tidemark_v1_DiffRequest, callback: grpc.requestCallback<_tidemark_v1_DiffResponse__Output>): grpc.ClientUnaryCall;
  
  FlushVolume(argument: _tidemark_v1_FlushVolumeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_FlushVolumeResponse__Output>): grpc.ClientUnaryCall;
  FlushVolume(argument: _tidemark_v1_FlushVolumeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_FlushVolumeResponse__Output>): grpc.ClientUnaryCall;
  FlushVolume(argument: _tidemark_v1_FlushVolumeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_FlushVolumeResponse__Output>): grpc.ClientUnaryCall;
  FlushVolume(argument: _tidemark_v1_FlushVolumeRequest, callback: grpc.requestCallback<_tidemark_v1_FlushVolumeResponse__Output>): grpc.ClientUnaryCall;
  flushVolume(argument: _tidemark_v1_FlushVolumeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_FlushVolumeResponse__Output>): grpc.ClientUnaryCall;
  flushVolume(argument: _tidemark_v1_FlushVolumeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_FlushVolumeResponse__Output>): grpc.ClientUnaryCall;
  flushVolume(argument: _tidemark_v1_FlushVolumeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_FlushVolumeResponse__Output>): grpc.ClientUnaryCall;
  flushVolume(argument: _tidemark_v1_FlushVolumeRequest, callback: grpc.requestCallback<_tidemark_v1_FlushVolumeResponse__Output>): grpc.ClientUnaryCall;
  
  GetStatus(argument: _tidemark_v1_GetStatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Status__Output>): grpc.ClientUnaryCall;
  GetStatus(argument: _tidemark_v1_GetStatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_Status__Output>): grpc.ClientUnaryCall;
  GetStatus(argument: _tidemark_v1_GetStatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Status__Output>): grpc.ClientUnaryCall;
  GetStatus(argument: _tidemark_v1_GetStatusRequest, callback: grpc.requestCallback<_tidemark_v1_Status__Output>): grpc.ClientUnaryCall;
  getStatus(argument: _tidemark_v1_GetStatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Status__Output>): grpc.ClientUnaryCall;
  getStatus(argument: _tidemark_v1_GetStatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_Status__Output>): grpc.ClientUnaryCall;
  getStatus(argument: _tidemark_v1_GetStatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Status__Output>): grpc.ClientUnaryCall;
  getStatus(argument: _tidemark_v1_GetStatusRequest, callback: grpc.requestCallback<_tidemark_v1_Status__Output>): grpc.ClientUnaryCall;
  
  GetVolume(argument: _tidemark_v1_GetVolumeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  GetVolume(argument: _tidemark_v1_GetVolumeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  GetVolume(argument: _tidemark_v1_GetVolumeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  GetVolume(argument: _tidemark_v1_GetVolumeRequest, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  getVolume(argument: _tidemark_v1_GetVolumeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  getVolume(argument: _tidemark_v1_GetVolumeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  getVolume(argument: _tidemark_v1_GetVolumeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  getVolume(argument: _tidemark_v1_GetVolumeRequest, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  
  ListMarkers(argument: _tidemark_v1_ListMarkersRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_ListMarkersResponse__Output>): grpc.ClientUnaryCall;
  ListMarkers(argument: _tidemark_v1_ListMarkersRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_ListMarkersResponse__Output>): grpc.ClientUnaryCall;
  ListMarkers(argument: _tidemark_v1_ListMarkersRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_ListMarkersResponse__Output>): grpc.ClientUnaryCall;
  ListMarkers(argument: _tidemark_v1_ListMarkersRequest, callback: grpc.requestCallback<_tidemark_v1_ListMarkersResponse__Output>): grpc.ClientUnaryCall;
  listMarkers(argument: _tidemark_v1_ListMarkersRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_ListMarkersResponse__Output>): grpc.ClientUnaryCall;
  listMarkers(argument: _tidemark_v1_ListMarkersRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_ListMarkersResponse__Output>): grpc.ClientUnaryCall;
  listMarkers(argument: _tidemark_v1_ListMarkersRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_ListMarkersResponse__Output>): grpc.ClientUnaryCall;
  listMarkers(argument: _tidemark_v1_ListMarkersRequest, callback: grpc.requestCallback<_tidemark_v1_ListMarkersResponse__Output>): grpc.ClientUnaryCall;
  
  ListSnapshots(argument: _tidemark_v1_ListSnapshotsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_ListSnapshotsResponse__Output>): grpc.ClientUnaryCall;
  ListSnapshots(argument: _tidemark_v1_ListSnapshotsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_ListSnapshotsResponse__Output>): grpc.ClientUnaryCall;
  ListSnapshots(argument: _tidemark_v1_ListSnapshotsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_ListSnapshotsResponse__Output>): grpc.ClientUnaryCall;
  ListSnapshots(argument: _tidemark_v1_ListSnapshotsRequest, callback: grpc.requestCallback<_tidemark_v1_ListSnapshotsResponse__Output>): grpc.ClientUnaryCall;
  listSnapshots(argument: _tidemark_v1_ListSnapshotsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_ListSnapshotsResponse__Output>): grpc.ClientUnaryCall;
  listSnapshots(argument: _tidemark_v1_ListSnapshotsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_ListSnapshotsResponse__Output>): grpc.ClientUnaryCall;
  listSnapshots(argument: _tidemark_v1_ListSnapshotsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_ListSnapshotsResponse__Output>): grpc.ClientUnaryCall;
  listSnapshots(argument: _tidemark_v1_ListSnapshotsRequest, callback: grpc.requestCallback<_tidemark_v1_ListSnapshotsResponse__Output>): grpc.ClientUnaryCall;
  
  ListVolumes(argument: _tidemark_v1_ListVolumesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_ListVolumesResponse__Output>): grpc.ClientUnaryCall;
  ListVolumes(argument: _tidemark_v1_ListVolumesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_ListVolumesResponse__Output>): grpc.ClientUnaryCall;
  ListVolumes(argument: _tidemark_v1_ListVolumesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_ListVolumesResponse__Output>): grpc.ClientUnaryCall;
  ListVolumes(argument: _tidemark_v1_ListVolumesRequest, callback: grpc.requestCallback<_tidemark_v1_ListVolumesResponse__Output>): grpc.ClientUnaryCall;
  listVolumes(argument: _tidemark_v1_ListVolumesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_ListVolumesResponse__Output>): grpc.ClientUnaryCall;
  listVolumes(argument: _tidemark_v1_ListVolumesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_ListVolumesResponse__Output>): grpc.ClientUnaryCall;
  listVolumes(argument: _tidemark_v1_ListVolumesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_ListVolumesResponse__Output>): grpc.ClientUnaryCall;
  listVolumes(argument: _tidemark_v1_ListVolumesRequest, callback: grpc.requestCallback<_tidemark_v1_ListVolumesResponse__Output>): grpc.ClientUnaryCall;
  
  ReadVolume(argument: _tidemark_v1_ReadVolumeRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_tidemark_v1_ReadVolumeChunk__Output>;
  ReadVolume(argument: _tidemark_v1_ReadVolumeRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_tidemark_v1_ReadVolumeChunk__Output>;
  readVolume(argument: _tidemark_v1_ReadVolumeRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_tidemark_v1_ReadVolumeChunk__Output>;
  readVolume(argument: _tidemark_v1_ReadVolumeRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_tidemark_v1_ReadVolumeChunk__Output>;
  
  Restore(argument: _tidemark_v1_RestoreRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_tidemark_v1_RestoreEvent__Output>;
  Restore(argument: _tidemark_v1_RestoreRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_tidemark_v1_RestoreEvent__Output>;
  restore(argument: _tidemark_v1_RestoreRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_tidemark_v1_RestoreEvent__Output>;
  restore(argument: _tidemark_v1_RestoreRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_tidemark_v1_RestoreEvent__Output>;
  
  SetRetention(argument: _tidemark_v1_SetRetentionRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  SetRetention(argument: _tidemark_v1_SetRetentionRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  SetRetention(argument: _tidemark_v1_SetRetentionRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  SetRetention(argument: _tidemark_v1_SetRetentionRequest, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  setRetention(argument: _tidemark_v1_SetRetentionRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  setRetention(argument: _tidemark_v1_SetRetentionRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  setRetention(argument: _tidemark_v1_SetRetentionRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  setRetention(argument: _tidemark_v1_SetRetentionRequest, callback: grpc.requestCallback<_tidemark_v1_Volume__Output>): grpc.ClientUnaryCall;
  
  WriteVolume(metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_WriteVolumeResponse__Output>): grpc.ClientWritableStream<_tidemark_v1_WriteVolumeRequest>;
  WriteVolume(metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_WriteVolumeResponse__Output>): grpc.ClientWritableStream<_tidemark_v1_WriteVolumeRequest>;
  WriteVolume(options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_WriteVolumeResponse__Output>): grpc.ClientWritableStream<_tidemark_v1_WriteVolumeRequest>;
  WriteVolume(callback: grpc.requestCallback<_tidemark_v1_WriteVolumeResponse__Output>): grpc.ClientWritableStream<_tidemark_v1_WriteVolumeRequest>;
  writeVolume(metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_WriteVolumeResponse__Output>): grpc.ClientWritableStream<_tidemark_v1_WriteVolumeRequest>;
  writeVolume(metadata: grpc.Metadata, callback: grpc.requestCallback<_tidemark_v1_WriteVolumeResponse__Output>): grpc.ClientWritableStream<_tidemark_v1_WriteVolumeRequest>;
  writeVolume(options: grpc.CallOptions, callback: grpc.requestCallback<_tidemark_v1_WriteVolumeResponse__Output>): grpc.ClientWritableStream<_tidemark_v1_WriteVolumeRequest>;
  writeVolume(callback: grpc.requestCallback<_tidemark_v1_WriteVolumeResponse__Output>): grpc.ClientWritableStream<_tidemark_v1_WriteVolumeRequest>;
  
}

export interface AdminHandlers extends grpc.UntypedServiceImplementation {
  ClearInterruptedRestore: grpc.handleUnaryCall<_tidemark_v1_ClearInterruptedRestoreRequest__Output, _tidemark_v1_Volume>;
  
  CreateMarker: grpc.handleUnaryCall<_tidemark_v1_CreateMarkerRequest__Output, _tidemark_v1_CreateMarkerResponse>;
  
  CreateSnapshot: grpc.handleUnaryCall<_tidemark_v1_CreateSnapshotRequest__Output, _tidemark_v1_Snapshot>;
  
  CreateVolume: grpc.handleUnaryCall<_tidemark_v1_CreateVolumeRequest__Output, _tidemark_v1_Volume>;
  
  DeleteSnapshot: grpc.handleUnaryCall<_tidemark_v1_DeleteSnapshotRequest__Output, _tidemark_v1_DeleteSnapshotResponse>;
  
  DeleteVolume: grpc.handleUnaryCall<_tidemark_v1_DeleteVolumeRequest__Output, _tidemark_v1_DeleteVolumeResponse>;
  
  Diff: grpc.handleUnaryCall<_tidemark_v1_DiffRequest__Output, _tidemark_v1_DiffResponse>;
  
  FlushVolume: grpc.handleUnaryCall<_tidemark_v1_FlushVolumeRequest__Output, _tidemark_v1_FlushVolumeResponse>;
  
  GetStatus: grpc.handleUnaryCall<_tidemark_v1_GetStatusRequest__Output, _tidemark_v1_Status>;
  
  GetVolume: grpc.handleUnaryCall<_tidemark_v1_GetVolumeRequest__Output, _tidemark_v1_Volume>;
  
  ListMarkers: grpc.handleUnaryCall<_tidemark_v1_ListMarkersRequest__Output, _tidemark_v1_ListMarkersResponse>;
  
  ListSnapshots: grpc.handleUnaryCall<_tidemark_v1_ListSnapshotsRequest__Output, _tidemark_v1_ListSnapshotsResponse>;
  
  ListVolumes: grpc.handleUnaryCall<_tidemark_v1_ListVolumesRequest__Output, _tidemark_v1_ListVolumesResponse>;
  
  ReadVolume: grpc.handleServerStreamingCall<_tidemark_v1_ReadVolumeRequest__Output, _tidemark_v1_ReadVolumeChunk>;
  
  Restore: grpc.handleServerStreamingCall<_tidemark_v1_RestoreRequest__Output, _tidemark_v1_RestoreEvent>;
  
  SetRetention: grpc.handleUnaryCall<_tidemark_v1_SetRetentionRequest__Output, _tidemark_v1_Volume>;
  
  WriteVolume: grpc.handleClientStreamingCall<_tidemark_v1_WriteVolumeRequest__Output, _tidemark_v1_WriteVolumeResponse>;
  
}

export interface AdminDefinition extends grpc.ServiceDefinition {
  ClearInterruptedRestore: MethodDefinition<_tidemark_v1_ClearInterruptedRestoreRequest, _tidemark_v1_Volume, _tidemark_v1_ClearInterruptedRestoreRequest__Output, _tidemark_v1_Volume__Output>
  CreateMarker: MethodDefinition<_tidemark_v1_CreateMarkerRequest, _tidemark_v1_CreateMarkerResponse, _tidemark_v1_CreateMarkerRequest__Output, _tidemark_v1_CreateMarkerResponse__Output>
  CreateSnapshot: MethodDefinition<_tidemark_v1_CreateSnapshotRequest, _tidemark_v1_Snapshot, _tidemark_v1_CreateSnapshotRequest__Output, _tidemark_v1_Snapshot__Output>
  CreateVolume: MethodDefinition<_tidemark_v1_CreateVolumeRequest, _tidemark_v1_Volume, _tidemark_v1_CreateVolumeRequest__Output, _tidemark_v1_Volume__Output>
  DeleteSnapshot: MethodDefinition<_tidemark_v1_DeleteSnapshotRequest, _tidemark_v1_DeleteSnapshotResponse, _tidemark_v1_DeleteSnapshotRequest__Output, _tidemark_v1_DeleteSnapshotResponse__Output>
  DeleteVolume: MethodDefinition<_tidemark_v1_DeleteVolumeRequest, _tidemark_v1_DeleteVolumeResponse, _tidemark_v1_DeleteVolumeRequest__Output, _tidemark_v1_DeleteVolumeResponse__Output>
  Diff: MethodDefinition<_tidemark_v1_DiffRequest, _tidemark_v1_DiffResponse, _tidemark_v1_DiffRequest__Output, _tidemark_v1_DiffResponse__Output>
  FlushVolume: MethodDefinition<_tidemark_v1_FlushVolumeRequest, _tidemark_v1_FlushVolumeResponse, _tidemark_v1_FlushVolumeRequest__Output, _tidemark_v1_FlushVolumeResponse__Output>
  GetStatus: MethodDefinition<_tidemark_v1_GetStatusRequest, _tidemark_v1_Status, _tidemark_v1_GetStatusRequest__Output, _tidemark_v1_Status__Output>
  GetVolume: MethodDefinition<_tidemark_v1_GetVolumeRequest, _tidemark_v1_Volume, _tidemark_v1_GetVolumeRequest__Output, _tidemark_v1_Volume__Output>
  ListMarkers: MethodDefinition<_tidemark_v1_ListMarkersRequest, _tidemark_v1_ListMarkersResponse, _tidemark_v1_ListMarkersRequest__Output, _tidemark_v1_ListMarkersResponse__Output>
  ListSnapshots: MethodDefinition<_tidemark_v1_ListSnapshotsRequest, _tidemark_v1_ListSnapshotsResponse, _tidemark_v1_ListSnapshotsRequest__Output, _tidemark_v1_ListSnapshotsResponse__Output>
  ListVolumes: MethodDefinition<_tidemark_v1_ListVolumesRequest, _tidemark_v1_ListVolumesResponse, _tidemark_v1_ListVolumesRequest__Output, _tidemark_v1_ListVolumesResponse__Output>
  ReadVolume: MethodDefinition<_tidemark_v1_ReadVolumeRequest, _tidemark_v1_ReadVolumeChunk, _tidemark_v1_ReadVolumeRequest__Output, _tidemark_v1_ReadVolumeChunk__Output>
  Restore: MethodDefinition<_tidemark_v1_RestoreRequest, _tidemark_v1_RestoreEvent, _tidemark_v1_RestoreRequest__Output, _tidemark_v1_RestoreEvent__Output>
  SetRetention: MethodDefinition<_tidemark_v1_SetRetentionRequest, _tidemark_v1_Volume, _tidemark_v1_SetRetentionRequest__Output, _tidemark_v1_Volume__Output>
  WriteVolume: MethodDefinition<_tidemark_v1_WriteVolumeRequest, _tidemark_v1_WriteVolumeResponse, _tidemark_v1_WriteVolumeRequest__Output, _tidemark_v1_WriteVolumeResponse__Output>
}
