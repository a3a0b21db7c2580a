// Original file: admin.proto


export interface ListMarkersRequest {
  'volume'?: (string);
}

export interface ListMarkersRequest__Output {
  'volume': (string);
}
