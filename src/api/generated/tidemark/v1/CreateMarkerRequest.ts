// Original file: admin.proto


export interface CreateMarkerRequest {
  'name'?: (string);
  'volumes'?: (string)[];
}

export interface CreateMarkerRequest__Output {
  'name': (string);
  'volumes': (string)[];
}
