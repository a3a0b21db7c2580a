// Original file: admin.proto


export interface DeleteSnapshotRequest {
  'volume'?: (string);
  'name'?: (string);
}

export interface DeleteSnapshotRequest__Output {
  'volume': (string);
  'name': (string);
}
