// Original file: admin.proto


export interface DiffRequest {
  'volume'?: (string);
  'base'?: (string);
  'target'?: (string);
}

export interface DiffRequest__Output {
  'volume': (string);
  'base': (string);
  'target': (string);
}
