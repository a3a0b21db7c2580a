// Original file: admin.proto

import type { Extent as _tidemark_v1_Extent, Extent__Output as _tidemark_v1_Extent__Output } from '../../tidemark/v1/Extent.js';
import type { Long } from '@grpc/proto-loader';

export interface DiffResponse {
  'extents'?: (_tidemark_v1_Extent)[];
  'changedBytes'?: (number | string | Long);
}

export interface DiffResponse__Output {
  'extents': (_tidemark_v1_Extent__Output)[];
  'changedBytes': (string);
}
