// Original file: admin.proto

import type { Long } from '@grpc/proto-loader';

export interface Status {
  'store'?: (string);
  'version'?: (string);
  'volumeCount'?: (number | string | Long);
  'nodeId'?: (string);
  'pid'?: (number | string | Long);
  'startedAt'?: (string);
}

export interface Status__Output {
  'store': (string);
  'version': (string);
  'volumeCount': (string);
  'nodeId': (string);
  'pid': (string);
  'startedAt': (string);
}
