// Original file: admin.proto

import type { Long } from '@grpc/proto-loader';

export interface RestoreResult {
  'volume'?: (string);
  'pointSequence'?: (number | string | Long);
  'method'?: (string);
  'baseSnapshot'?: (string);
  'bytesTotal'?: (number | string | Long);
  'bytesRestored'?: (number | string | Long);
  'durationMs'?: (number | string | Long);
}

export interface RestoreResult__Output {
  'volume': (string);
  'pointSequence': (string);
  'method': (string);
  'baseSnapshot': (string);
  'bytesTotal': (string);
  'bytesRestored': (string);
  'durationMs': (string);
}
