// Original file: admin.proto

import type { Extent as _tidemark_v1_Extent, Extent__Output as _tidemark_v1_Extent__Output } from '../../tidemark/v1/Extent.js';
import type { Long } from '@grpc/proto-loader';

export interface InterruptedRestore {
  'source'?: (string);
  'pointSequence'?: (number | string | Long);
  'ranges'?: (_tidemark_v1_Extent)[];
  'startedAt'?: (string);
}

export interface InterruptedRestore__Output {
  'source': (string);
  'pointSequence': (string);
  'ranges': (_tidemark_v1_Extent__Output)[];
  'startedAt': (string);
}
