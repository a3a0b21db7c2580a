// Original file: admin.proto

import type { Long } from '@grpc/proto-loader';

export interface ReadVolumeRequest {
  'volume'?: (string);
  'offset'?: (number | string | Long);
  'length'?: (number | string | Long);
  '_length'?: "length";
}

export interface ReadVolumeRequest__Output {
  'volume': (string);
  'offset': (string);
  'length'?: (string);
  '_length'?: "length";
}
