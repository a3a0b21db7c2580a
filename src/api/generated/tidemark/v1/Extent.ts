// Original file: admin.proto

import type { Long } from '@grpc/proto-loader';

export interface Extent {
  'offset'?: (number | string | Long);
  'length'?: (number | string | Long);
}

export interface Extent__Output {
  'offset': (string);
  'length': (string);
}
