// Original file: admin.proto

import type { Marker as _tidemark_v1_Marker, Marker__Output as _tidemark_v1_Marker__Output } from '../../tidemark/v1/Marker.js';

export interface CreateMarkerResponse {
  'markers'?: (_tidemark_v1_Marker)[];
}

export interface CreateMarkerResponse__Output {
  'markers': (_tidemark_v1_Marker__Output)[];
}
