// Original file: admin.proto


export interface ListSnapshotsRequest {
  'volume'?: (string);
  'includeInternal'?: (boolean);
}

export interface ListSnapshotsRequest__Output {
  'volume': (string);
  'includeInternal': (boolean);
}
