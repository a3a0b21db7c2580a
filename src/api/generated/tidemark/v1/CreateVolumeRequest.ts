// Original file: admin.proto

import type { Retention as _tidemark_v1_Retention, Retention__Output as _tidemark_v1_Retention__Output } from '../../tidemark/v1/Retention.js';
import type { Long } from '@grpc/proto-loader';

export interface CreateVolumeRequest {
  'name'?: (string);
  'size'?: (number | string | Long);
  'blockSize'?: (number | string | Long);
  'granularity'?: (number | string | Long);
  'retention'?: (_tidemark_v1_Retention | null);
}

export interface CreateVolumeRequest__Output {
  'name': (string);
  'size': (string);
  'blockSize': (string);
  'granularity': (string);
  'retention': (_tidemark_v1_Retention__Output | null);
}
