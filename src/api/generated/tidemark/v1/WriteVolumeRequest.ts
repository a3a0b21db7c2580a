// Original file: admin.proto

import type { Long } from '@grpc/proto-loader';

export interface WriteVolumeRequest {
  'volume'?: (string);
  'offset'?: (number | string | Long);
  'length'?: (number | string | Long);
  'flush'?: (boolean);
  'data'?: (Buffer | Uint8Array | string);
  '_length'?: "length";
}

export interface WriteVolumeRequest__Output {
  'volume': (string);
  'offset': (string);
  'length'?: (string);
  'flush': (boolean);
  'data': (Buffer);
  '_length'?: "length";
}
