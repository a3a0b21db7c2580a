// Original file: admin.proto

import type { Long } from '@grpc/proto-loader';

export interface Retention {
  'maxBytes'?: (number | string | Long);
  'maxAgeSeconds'?: (number | string | Long);
  '_maxBytes'?: "maxBytes";
  '_maxAgeSeconds'?: "maxAgeSeconds";
}

export interface Retention__Output {
  'maxBytes'?: (string);
  'maxAgeSeconds'?: (string);
  '_maxBytes'?: "maxBytes";
  '_maxAgeSeconds'?: "maxAgeSeconds";
}
