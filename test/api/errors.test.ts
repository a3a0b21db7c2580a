import * as grpc from '@grpc/grpc-js';
import { fromServiceError, toServiceError } from '../../src/api/errors.js';
import { TidemarkError, type ErrorCode } from '../../src/util/errors.js';
import { grpcStatusFor } from '../../src/util/grpc.js';

const table: [ErrorCode, grpc.status][] = [
  ['INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT],
  ['NOT_FOUND', grpc.status.NOT_FOUND],
  ['ALREADY_EXISTS', grpc.status.ALREADY_EXISTS],
  ['OUT_OF_RANGE', grpc.status.OUT_OF_RANGE],
  ['FAILED_PRECONDITION', grpc.status.FAILED_PRECONDITION],
  ['EXPIRED', grpc.status.FAILED_PRECONDITION],
  ['BUSY', grpc.status.FAILED_PRECONDITION],
  ['RESOURCE_EXHAUSTED', grpc.status.RESOURCE_EXHAUSTED],
  ['UNAVAILABLE', grpc.status.UNAVAILABLE],
  ['STORE_LOCKED', grpc.status.UNAVAILABLE],
  ['INTERNAL', grpc.status.INTERNAL],
];

describe('error mapping between the engine and gRPC', () => {
  it.each(table)('sends %s as gRPC status %i and brings it back unchanged', (code, status) => {
    expect(grpcStatusFor(code)).toBe(status);
    const sent = toServiceError(new TidemarkError(code, `something ${code}`));
    expect(sent.code).toBe(status);
    expect(sent.metadata?.get('tidemark-code')).toEqual([code]);
    // What the client sees: a ServiceError built from that status.
    const received = Object.assign(new Error(`${status} ${sent.details}`), { code: status, details: sent.details!, metadata: sent.metadata! });
    const back = fromServiceError(received, '/x.sock');
    expect(back.code).toBe(code);
    expect(back.message).toBe(`something ${code}`);
  });

  it('falls back on the gRPC status when a server sent no tidemark-code', () => {
    const received = Object.assign(new Error('x'), { code: grpc.status.NOT_FOUND, details: 'gone', metadata: new grpc.Metadata() });
    expect(fromServiceError(received, '/x.sock').code).toBe('NOT_FOUND');
  });

  it('explains an unreachable daemon', () => {
    const received = Object.assign(new Error('x'), {
      code: grpc.status.UNAVAILABLE,
      details: 'No connection established. Last error: Error: connect ECONNREFUSED /run/t/admin.sock',
      metadata: new grpc.Metadata(),
    });
    const err = fromServiceError(received, '/run/t/admin.sock');
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe('cannot reach the tidemark daemon at /run/t/admin.sock: is `tidemark serve` running? (ECONNREFUSED)');
  });
});
