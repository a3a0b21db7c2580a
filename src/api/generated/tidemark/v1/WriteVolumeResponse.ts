// Original file: admin.proto

import type { Long } from '@grpc/proto-loader';

export interface WriteVolumeResponse {
  'bytesWritten'?: (number | string | Long);
  'sequence'?: (number | string | Long);
  'flushed'?: (boolean);
}

export interface WriteVolumeResponse__Output {
  'bytesWritten': (string);
  'sequence': (string);
  'flushed': (boolean);
}
