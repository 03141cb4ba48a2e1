import fc from 'fast-check';
import { errors } from '@nats-io/transport-node';
import {
  CUSTOMER_STREAM_EXISTS_MESSAGE,
  SAP_STREAM,
  STREAM_CONSUMER_EXISTS_MESSAGE,
  checkCustomerData,
  classifyConnectError,
  decideCustomerData,
  describeError,
  unlistedStreams,
  type StreamSummary,
} from '../../src/nats/customer-data.ts';

function stream(name: string, consumers = 0): StreamSummary {
  return { name, consumers };
}

describe('decideCustomerData', () => {
  test('the messages are upstream’s, word for word', () => {
    expect(CUSTOMER_STREAM_EXISTS_MESSAGE).toBe(
      'Cannot delete NATS cluster as customer stream exists',
    );
    expect(STREAM_CONSUMER_EXISTS_MESSAGE).toBe(
      'Cannot delete NATS cluster as stream consumer exists',
    );
    expect(SAP_STREAM).toBe('sap');
  });

  test('no streams, or only sap without consumers: nothing blocks', () => {
    expect(decideCustomerData([])).toEqual({ kind: 'none' });
    expect(decideCustomerData([stream('sap')])).toEqual({ kind: 'none' });
  });

  test('a consumer of sap blocks', () => {
    expect(decideCustomerData([stream('sap', 2)])).toEqual({
      kind: 'blocked',
      reason: 'consumer',
      message: STREAM_CONSUMER_EXISTS_MESSAGE,
      streams: ['sap'],
    });
  });

  test('any other stream blocks, with or without consumers, and names them sorted', () => {
    expect(decideCustomerData([stream('orders')])).toEqual({
      kind: 'blocked',
      reason: 'stream',
      message: CUSTOMER_STREAM_EXISTS_MESSAGE,
      streams: ['orders'],
    });
    expect(decideCustomerData([stream('orders', 1), stream('sap'), stream('billing')])).toEqual(
      expect.objectContaining({ reason: 'stream', streams: ['billing', 'orders'] }),
    );
  });

  test('a customer stream is reported before a consumer of sap, as upstream checks it first', () => {
    expect(decideCustomerData([stream('sap', 3), stream('orders')])).toEqual(
      expect.objectContaining({ reason: 'stream', streams: ['orders'] }),
    );
  });

  test('names are case-sensitive: SAP is a customer stream', () => {
    expect(decideCustomerData([stream('SAP')])).toEqual(
      expect.objectContaining({ reason: 'stream', streams: ['SAP'] }),
    );
  });

  test('blocks exactly when a customer stream or a consumer of sap exists', () => {
    const name = fc.oneof(fc.constant('sap'), fc.constant('SAP'), fc.string({ minLength: 1 }));
    const streams = fc.array(fc.record({ name, consumers: fc.nat({ max: 3 }) }), { maxLength: 6 });
    fc.assert(
      fc.property(streams, (list) => {
        const verdict = decideCustomerData(list);
        const customer = list.filter((s) => s.name !== 'sap');
        const sapConsumed = list.some((s) => s.name === 'sap' && s.consumers > 0);
        if (customer.length > 0) {
          expect(verdict).toEqual({
            kind: 'blocked',
            reason: 'stream',
            message: CUSTOMER_STREAM_EXISTS_MESSAGE,
            streams: [...new Set(customer.map((s) => s.name))].toSorted(),
          });
        } else if (sapConsumed) {
          expect(verdict).toMatchObject({ kind: 'blocked', reason: 'consumer' });
        } else {
          expect(verdict).toEqual({ kind: 'none' });
        }
      }),
    );
  });
});

describe('unlistedStreams', () => {
  test('the names the listing left out, once each, sorted', () => {
    expect(unlistedStreams([], [])).toEqual([]);
    expect(unlistedStreams(['sap', 'orders'], [stream('sap')])).toEqual(['orders']);
    expect(unlistedStreams(['b', 'a', 'b', 'sap'], [stream('sap')])).toEqual(['a', 'b']);
    // Listed but not named: created between the two requests; not missing.
    expect(unlistedStreams(['sap'], [stream('sap'), stream('new')])).toEqual([]);
  });
});

describe('classifyConnectError', () => {
  function withCode(message: string, code: string): Error {
    return Object.assign(new Error(message), { code });
  }

  test.each([
    ['refused', new errors.ConnectionError('connection refused')],
    [
      'closed before the handshake',
      new errors.ConnectionError('error connecting - node provided an undefined error'),
    ],
    ['no handshake in time', new errors.TimeoutError()],
    ['no such host', withCode('getaddrinfo ENOTFOUND nats.invalid', 'ENOTFOUND')],
    ['reset', withCode('connect ECONNRESET 127.0.0.1:4222', 'ECONNRESET')],
    ['no route', withCode('connect EHOSTUNREACH 10.0.0.1:4222', 'EHOSTUNREACH')],
  ])('%s: unreachable', (_, err) => {
    expect(classifyConnectError(err)).toEqual({ kind: 'unreachable', error: err.message });
  });

  test.each([
    ['refused by authorization', new errors.AuthorizationError('Authorization Violation')],
    ['not NATS', new Error('unexpected response from server')],
    ['resolver did not answer', withCode('getaddrinfo EAI_AGAIN nats', 'EAI_AGAIN')],
    ['a malformed URL', new TypeError('Invalid URL')],
    ['not even an Error', 'boom'],
  ])('%s: an error to retry', (_, err) => {
    expect(classifyConnectError(err)).toMatchObject({ kind: 'error' });
  });
});

describe('describeError', () => {
  test('joins the causes, without repeating a message', () => {
    const cause = new Error('no responders');
    expect(describeError(new Error('jetstream is not enabled', { cause }))).toBe(
      'jetstream is not enabled: no responders',
    );
    expect(describeError(new Error('same', { cause: new Error('same') }))).toBe('same');
    expect(describeError({ code: 1 })).toBe('{ code: 1 }');
    expect(describeError(new Error(''))).toBe('unknown error');
  });
});

describe('checkCustomerData', () => {
  test.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY])(
    'refuses a timeout of %p before connecting',
    async (timeoutMs) => {
      await expect(checkCustomerData('nats://127.0.0.1:1', { timeoutMs })).rejects.toThrow(
        RangeError,
      );
    },
  );
});
