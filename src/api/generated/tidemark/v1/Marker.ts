// Original file: admin.proto

import type { Long } from '@grpc/proto-loader';

export interface Marker {
  'volume'?: (string);
  'name'?: (string);
  'sequence'?: (number | string | Long);
  'createdAt'?: (string);
  'group'?: (string);
  'expired'?: (boolean);
}

export interface Marker__Output {
  'volume': (string);
  'name': (string);
  'sequence': (string);
  'createdAt': (string);
  'group': (string);
  'expired': (boolean);
}
