// Original file: admin.proto


export interface FlushVolumeRequest {
  'volume'?: (string);
}

export interface FlushVolumeRequest__Output {
  'volume': (string);
}
