// Original file: admin.proto


export interface CreateSnapshotRequest {
  'volume'?: (string);
  'name'?: (string);
}

export interface CreateSnapshotRequest__Output {
  'volume': (string);
  'name': (string);
}
