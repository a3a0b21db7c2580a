// Original file: admin.proto

import type { Extent as _tidemark_v1_Extent, Extent__Output as _tidemark_v1_Extent__Output } from '../../tidemark/v1/Extent.js';
import type { Long } from '@grpc/proto-loader';

export interface RestoreRequest {
  'volume'?: (string);
  'snapshot'?: (string);
  'marker'?: (string);
  'time'?: (string);
  'sequence'?: (number | string | Long);
  'ranges'?: (_tidemark_v1_Extent)[];
  'target'?: (string);
  'force'?: (boolean);
  'source'?: "snapshot"|"marker"|"time"|"sequence";
}

export interface RestoreRequest__Output {
  'volume': (string);
  'snapshot'?: (string);
  'marker'?: (string);
  'time'?: (string);
  'sequence'?: (string);
  'ranges': (_tidemark_v1_Extent__Output)[];
  'target': (string);
  'force': (boolean);
  'source'?: "snapshot"|"marker"|"time"|"sequence";
}
