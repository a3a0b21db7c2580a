// Original file: admin.proto

import type { Long } from '@grpc/proto-loader';

export interface Snapshot {
  'volume'?: (string);
  'name'?: (string);
  'sequence'?: (number | string | Long);
  'createdAt'?: (string);
  'internal'?: (boolean);
  'method'?: (string);
  'size'?: (number | string | Long);
}

export interface Snapshot__Output {
  'volume': (string);
  'name': (string);
  'sequence': (string);
  'createdAt': (string);
  'internal': (boolean);
  'method': (string);
  'size': (string);
}
