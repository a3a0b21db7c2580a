// Original file: admin.proto

import type { Long } from '@grpc/proto-loader';

export interface RestoreProgress {
  'bytesTotal'?: (number | string | Long);
  'bytesRestored'?: (number | string | Long);
}

export interface RestoreProgress__Output {
  'bytesTotal': (string);
  'bytesRestored': (string);
}
