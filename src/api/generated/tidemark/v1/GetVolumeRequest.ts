// Original file: admin.proto


export interface GetVolumeRequest {
  'name'?: (string);
}

export interface GetVolumeRequest__Output {
  'name': (string);
}
