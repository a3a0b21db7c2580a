// Original file: admin.proto

import type { Long } from '@grpc/proto-loader';

export interface ReadVolumeChunk {
  'offset'?: (number | string | Long);
  'data'?: (Buffer | Uint8Array | string);
}

export interface ReadVolumeChunk__Output {
  'offset': (string);
  'data': (Buffer);
}
