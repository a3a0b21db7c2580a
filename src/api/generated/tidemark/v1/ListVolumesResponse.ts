// Original file: admin.proto

import type { Volume as _tidemark_v1_Volume, Volume__Output as _tidemark_v1_Volume__Output } from '../../tidemark/v1/Volume.js';

export interface ListVolumesResponse {
  'volumes'?: (_tidemark_v1_Volume)[];
}

export interface ListVolumesResponse__Output {
  'volumes': (_tidemark_v1_Volume__Output)[];
}
