// Original file: admin.proto


export interface ClearInterruptedRestoreRequest {
  'name'?: (string);
}

export interface ClearInterruptedRestoreRequest__Output {
  'name': (string);
}
