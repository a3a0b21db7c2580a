// Original file: admin.proto

import type { Long } from '@grpc/proto-loader';

export interface FlushVolumeResponse {
  'sequence'?: (number | string | Long);
}

export interface FlushVolumeResponse__Output {
  'sequence': (string);
}
