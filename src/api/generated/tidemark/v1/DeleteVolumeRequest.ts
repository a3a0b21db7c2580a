// Original file: admin.proto


export interface DeleteVolumeRequest {
  'name'?: (string);
  'force'?: (boolean);
}

export interface DeleteVolumeRequest__Output {
  'name': (string);
  'force': (boolean);
}
