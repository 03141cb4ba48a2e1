import fc from 'fast-check';

import {
  QuantityError,
  canonicalQuantity,
  canonicalResourceQuantity,
  compareQuantities,
  formatQuantity,
  isZero,
  parseQuantity,
  quantityToBytes,
  validateQuantity,
  type Quantity,
} from '../../src/api/quantity.ts';

// Kubernetes' own error texts.
const FORMAT_WRONG =
  "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const NUMERIC_WRONG = 'unable to parse numeric part of quantity';
const SUFFIX_WRONG = "unable to parse quantity's suffix";

const MAX_INT64 = 2n ** 63n - 1n;

type Format = Quantity['format'];

/** A quantity worth `coefficient × 10^exponent`, as upstream's tests build them. */
const q = (coefficient: bigint, exponent: number, format: Format): Quantity => ({
  coefficient,
  exponent,
  format,
});

const negate = (x: Quantity): Quantity => q(-x.coefficient, x.exponent, x.format);

function parseError(input: string | number): string {
  try {
    parseQuantity(input);
  } catch (err) {
    if (err instanceof QuantityError) return err.message;
    throw err;
  }
  throw new Error(`${JSON.stringify(input)} parsed`);
}

describe('examples from the requirement', () => {
  it.each([
    ['1Gi', '1Gi', 1073741824n],
    ['500M', '500M', 500000000n],
    ['1.5Gi', '1536Mi', 1610612736n],
    ['1e9', '1e9', 1000000000n],
    ['0', '0', 0n],
    ['1000M', '1G', 1000000000n],
    ['0.5', '500m', 1n],
    ['100m', '100m', 1n],
    ['1Ki', '1Ki', 1024n],
    ['1024', '1024', 1024n],
    ['-1.5Gi', '-1536Mi', -1610612736n],
    ['0.5Ki', '512', 512n], // BinarySI below 1024 prints without a suffix
    ['100.035Ki', '102435840m', 102436n], // a fractional BinarySI value prints as DecimalSI
  ])('%s is stored as %s, %d bytes', (input, canonical, bytes) => {
    expect(canonicalQuantity(input)).toBe(canonical);
    expect(quantityToBytes(parseQuantity(input))).toBe(bytes);
  });
});

// k8s.io/apimachinery/pkg/api/resource/quantity_test.go, TestQuantityParse.
describe('upstream TestQuantityParse', () => {
  const table: [string, Quantity][] = [
    ['0', q(0n, 0, 'DecimalSI')],
    ['0n', q(0n, 0, 'DecimalSI')],
    ['0u', q(0n, 0, 'DecimalSI')],
    ['0m', q(0n, 0, 'DecimalSI')],
    ['0Ki', q(0n, 0, 'BinarySI')],
    ['0k', q(0n, 0, 'DecimalSI')],
    ['0Mi', q(0n, 0, 'BinarySI')],
    ['0M', q(0n, 0, 'DecimalSI')],
    ['0Gi', q(0n, 0, 'BinarySI')],
    ['0G', q(0n, 0, 'DecimalSI')],
    ['0Ti', q(0n, 0, 'BinarySI')],
    ['0T', q(0n, 0, 'DecimalSI')],
    ['1', q(1n, 0, 'DecimalSI')],
    ['1Ki', q(1024n, 0, 'BinarySI')],
    ['8Ki', q(8n * 1024n, 0, 'BinarySI')],
    ['7Mi', q(7n * 1024n ** 2n, 0, 'BinarySI')],
    ['6Gi', q(6n * 1024n ** 3n, 0, 'BinarySI')],
    ['5Ti', q(5n * 1024n ** 4n, 0, 'BinarySI')],
    ['4Pi', q(4n * 1024n ** 5n, 0, 'BinarySI')],
    ['3Ei', q(3n * 1024n ** 6n, 0, 'BinarySI')],
    ['10Ti', q(10n * 1024n ** 4n, 0, 'BinarySI')],
    ['100Ti', q(100n * 1024n ** 4n, 0, 'BinarySI')],
    ['5n', q(5n, -9, 'DecimalSI')],
    ['4u', q(4n, -6, 'DecimalSI')],
    ['3m', q(3n, -3, 'DecimalSI')],
    ['9', q(9n, 0, 'DecimalSI')],
    ['8k', q(8n, 3, 'DecimalSI')],
    ['50k', q(5n, 4, 'DecimalSI')],
    ['7M', q(7n, 6, 'DecimalSI')],
    ['6G', q(6n, 9, 'DecimalSI')],
    ['5T', q(5n, 12, 'DecimalSI')],
    ['40T', q(4n, 13, 'DecimalSI')],
    ['300T', q(3n, 14, 'DecimalSI')],
    ['2P', q(2n, 15, 'DecimalSI')],
    ['1E', q(1n, 18, 'DecimalSI')],
    ['1E-3', q(1n, -3, 'DecimalExponent')],
    ['1e3', q(1n, 3, 'DecimalExponent')],
    ['1E6', q(1n, 6, 'DecimalExponent')],
    ['1e9', q(1n, 9, 'DecimalExponent')],
    ['1E12', q(1n, 12, 'DecimalExponent')],
    ['1e15', q(1n, 15, 'DecimalExponent')],
    ['1E18', q(1n, 18, 'DecimalExponent')],
    ['1e14', q(1n, 14, 'DecimalExponent')],
    ['1e13', q(1n, 13, 'DecimalExponent')],
    ['100.035k', q(100035n, 0, 'DecimalSI')],
    ['0.001', q(1n, -3, 'DecimalSI')],
    ['0.0005k', q(5n, -1, 'DecimalSI')],
    ['0.005', q(5n, -3, 'DecimalSI')],
    ['0.05', q(5n, -2, 'DecimalSI')],
    ['0.5', q(5n, -1, 'DecimalSI')],
    ['0.00050k', q(5n, -1, 'DecimalSI')],
    ['0.00500', q(5n, -3, 'DecimalSI')],
    ['0.05000', q(5n, -2, 'DecimalSI')],
    ['0.50000', q(5n, -1, 'DecimalSI')],
    ['0.5e0', q(5n, -1, 'DecimalExponent')],
    ['0.5e-1', q(5n, -2, 'DecimalExponent')],
    ['0.5e-2', q(5n, -3, 'DecimalExponent')],
    ['10.035M', q(10035n, 3, 'DecimalSI')],
    ['1.2e3', q(12n, 2, 'DecimalExponent')],
    ['1.3E+6', q(13n, 5, 'DecimalExponent')],
    ['1.40e9', q(14n, 8, 'DecimalExponent')],
    ['1.53E12', q(153n, 10, 'DecimalExponent')],
    ['1.6e15', q(16n, 14, 'DecimalExponent')],
    ['1.7E18', q(17n, 17, 'DecimalExponent')],
    ['9.01', q(901n, -2, 'DecimalSI')],
    ['8.1k', q(81n, 2, 'DecimalSI')],
    ['7.123456M', q(7123456n, 0, 'DecimalSI')],
    ['6.987654321G', q(6987654321n, 0, 'DecimalSI')],
    ['5.444T', q(5444n, 9, 'DecimalSI')],
    ['40.1T', q(401n, 11, 'DecimalSI')],
    ['300.2T', q(3002n, 11, 'DecimalSI')],
    ['2.5P', q(25n, 14, 'DecimalSI')],
    ['1.01E', q(101n, 16, 'DecimalSI')],
    // Things that saturate or round.
    ['3.001n', q(4n, -9, 'DecimalSI')],
    ['1.1E-9', q(2n, -9, 'DecimalExponent')],
    ['0.0000000001', q(1n, -9, 'DecimalSI')],
    ['0.0000000005', q(1n, -9, 'DecimalSI')],
    ['0.00000000050', q(1n, -9, 'DecimalSI')],
    ['0.5e-9', q(1n, -9, 'DecimalExponent')],
    ['0.9n', q(1n, -9, 'DecimalSI')],
    ['0.00000012345', q(124n, -9, 'DecimalSI')],
    ['0.00000012354', q(124n, -9, 'DecimalSI')],
    ['9Ei', q(MAX_INT64, 0, 'BinarySI')],
    ['9223372036854775807Ki', q(MAX_INT64, 0, 'BinarySI')],
    ['12E', q(12n, 18, 'DecimalSI')],
    // Fractional binary values.
    ['100.035Ki', q(10243584n, -2, 'BinarySI')],
    ['0.5Mi', q(524288n, 0, 'BinarySI')],
    ['0.05Gi', q(536870912n, -1, 'BinarySI')],
    ['0.025Ti', q(274877906944n, -1, 'BinarySI')],
    // "Things written by trolls".
    ['0.000000000001Ki', q(2n, -9, 'DecimalSI')], // rounds up, changes format
    ['.001', q(1n, -3, 'DecimalSI')],
    ['.0001k', q(100n, -3, 'DecimalSI')],
    ['1.', q(1n, 0, 'DecimalSI')],
    ['1.G', q(1n, 9, 'DecimalSI')],
  ];

  it.each(table)('%s', (input, expected) => {
    const got = parseQuantity(input);
    expect(compareQuantities(got, expected)).toBe(0);
    expect(got.format).toBe(expected.format);

    const negative = parseQuantity(`-${input}`);
    expect(compareQuantities(negative, negate(expected))).toBe(0);
    expect(negative.format).toBe(expected.format);

    const plus = parseQuantity(`+${input}`);
    expect(compareQuantities(plus, expected)).toBe(0);
    expect(plus.format).toBe(expected.format);
  });

  it.each([
    ['1.1.M', FORMAT_WRONG],
    ['1+1.0M', FORMAT_WRONG],
    ['0.1mi', SUFFIX_WRONG],
    ['0.1am', FORMAT_WRONG],
    ['aoeu', FORMAT_WRONG],
    ['.5i', SUFFIX_WRONG],
    ['1i', SUFFIX_WRONG],
    ['-3.01i', SUFFIX_WRONG],
    ['-3.01e-', SUFFIX_WRONG],
    [' 1', FORMAT_WRONG], // surrounding whitespace is an error
    ['1 ', FORMAT_WRONG],
    ['', FORMAT_WRONG],
  ])('rejects %j: %s', (input, message) => {
    expect(parseError(input)).toBe(message);
  });
});

// TestQuantityString: the printed form of a value in a format, and a spelling that reaches it.
describe('upstream TestQuantityString', () => {
  const table: [Quantity, string, string][] = [
    [q(1024n ** 3n, 0, 'BinarySI'), '1Gi', '1024Mi'],
    [q(300n * 1024n ** 2n, 0, 'BinarySI'), '300Mi', '307200Ki'],
    [q(6n * 1024n, 0, 'BinarySI'), '6Ki', ''],
    [q(1001n * 1024n ** 3n, 0, 'BinarySI'), '1001Gi', '1025024Mi'],
    [q(1024n ** 4n, 0, 'BinarySI'), '1Ti', '1024Gi'],
    [q(5n, 0, 'BinarySI'), '5', '5000m'],
    [q(500n, -3, 'BinarySI'), '500m', '0.5'],
    [q(1n, 9, 'DecimalSI'), '1G', '1000M'],
    [q(1000n, 6, 'DecimalSI'), '1G', '0.001T'],
    [q(1000000n, 3, 'DecimalSI'), '1G', ''],
    [q(1000000000n, 0, 'DecimalSI'), '1G', ''],
    [q(1n, -3, 'DecimalSI'), '1m', '1000u'],
    [q(80n, -3, 'DecimalSI'), '80m', ''],
    [q(1080n, -3, 'DecimalSI'), '1080m', '1.08'],
    [q(108n, -2, 'DecimalSI'), '1080m', '1080000000n'],
    [q(10800n, -4, 'DecimalSI'), '1080m', ''],
    [q(300n, 6, 'DecimalSI'), '300M', ''],
    [q(1n, 12, 'DecimalSI'), '1T', ''],
    [q(1n, 18, 'DecimalSI'), '1E', ''],
    // Past E, since kubernetes/kubernetes#140459 (v1.36 printed `1` and lost the magnitude).
    [q(1n, 21, 'DecimalSI'), '1e21', '1000E'],
    [q(5n, 21, 'DecimalSI'), '5e21', '5000E'],
    [q(1n, 24, 'DecimalSI'), '1e24', '1000000E'],
    [q(1234567n, 6, 'DecimalSI'), '1234567M', ''],
    [q(1234567n, -3, 'BinarySI'), '1234567m', ''],
    [q(3n, 3, 'DecimalSI'), '3k', ''],
    [q(1025n, 0, 'BinarySI'), '1025', ''],
    [q(0n, 0, 'DecimalSI'), '0', ''],
    [q(0n, 0, 'BinarySI'), '0', ''],
    [q(1n, 9, 'DecimalExponent'), '1e9', '.001e12'],
    [q(1n, -3, 'DecimalExponent'), '1e-3', '0.001e0'],
    [q(1n, -9, 'DecimalExponent'), '1e-9', '1000e-12'],
    [q(80n, -3, 'DecimalExponent'), '80e-3', ''],
    [q(300n, 6, 'DecimalExponent'), '300e6', ''],
    [q(1n, 12, 'DecimalExponent'), '1e12', ''],
    [q(1n, 3, 'DecimalExponent'), '1e3', ''],
    [q(3n, 3, 'DecimalExponent'), '3e3', ''],
    [q(0n, 0, 'DecimalExponent'), '0', '00'],
    [q(1n, -9, 'DecimalSI'), '1n', ''],
    [q(80n, -9, 'DecimalSI'), '80n', ''],
    [q(1080n, -9, 'DecimalSI'), '1080n', ''],
    [q(108n, -8, 'DecimalSI'), '1080n', ''],
    [q(10800n, -10, 'DecimalSI'), '1080n', ''],
    [q(1n, -6, 'DecimalSI'), '1u', ''],
    [q(80n, -6, 'DecimalSI'), '80u', ''],
    [q(1080n, -6, 'DecimalSI'), '1080u', ''],
  ];

  it.each(table)('%o prints as %s (alternate %j)', (value, expected, alternate) => {
    expect(formatQuantity(value)).toBe(expected);
    expect(canonicalQuantity(expected)).toBe(expected);
    if (alternate !== '') expect(canonicalQuantity(alternate)).toBe(expected);
    if (value.coefficient !== 0n) expect(formatQuantity(negate(value))).toBe(`-${expected}`);
  });
});

// TestQuantityParseEmit.
describe('upstream TestQuantityParseEmit', () => {
  it.each([
    ['1Ki', '1Ki'],
    ['1Mi', '1Mi'],
    ['1Gi', '1Gi'],
    ['1024Mi', '1Gi'],
    ['1000M', '1G'],
    ['.001Ki', '1024m'],
    ['.000001Ki', '1024u'],
    ['.000000001Ki', '1024n'],
    ['.000000000001Ki', '2n'],
  ])('%s -> %s', (input, expected) => {
    expect(canonicalQuantity(input)).toBe(expected);
    expect(canonicalQuantity(`-${input}`)).toBe(`-${expected}`);
  });
});

// TestParseQuantity: values around the int64 limits, which decimal quantities may exceed.
describe('upstream TestParseQuantity (large values)', () => {
  it.each([
    ['-999999999999999999', '-999999999999999999'],
    ['999999999999999999', '999999999999999999'],
    ['-999999999999999999.0', '-999999999999999999'],
    ['999999999999999999.0', '999999999999999999'],
    ['-999999999999999999.1', '-999999999999999999100m'],
    ['999999999999999999.1', '999999999999999999100m'],
    ['-9999999999999999999', '-9999999999999999999'],
    ['9999999999999999999', '9999999999999999999'],
    ['-1E', '-1E'],
    ['1E', '1E'],
    ['-1000000000000000000', '-1E'],
    ['1000000000000000000', '1E'],
    ['-1.0E', '-1E'],
    ['1.0E', '1E'],
    ['9999999999999999999000m', '9999999999999999999'],
    ['9999999999999999999.1', '9999999999999999999100m'],
    ['1.0000000000000000001E', '1000000000000000000100m'],
    ['1000000000000000000.1', '1000000000000000000100m'],
    ['1.000000000000000001E', '1000000000000000001'],
    ['1000000000000000001', '1000000000000000001'],
    ['10E', '10E'],
    ['10000000000000000000', '10E'],
    ['10.0E', '10E'],
    ['10000000000000000000000m', '10E'],
    ['10.0000000000000000001E', '10000000000000000000100m'],
    ['10.000000000000000001E', '10000000000000000001'],
    ['-9223372036854775809', '-9223372036854775809'],
    ['9223372036854775806.0', '9223372036854775806'],
    ['-9223372036854775808.1', '-9223372036854775808100m'],
    ['9223372036854775807000m', '9223372036854775807'],
    ['9223372036854775808', '9223372036854775808'],
    ['9223372036854775808.1', '9223372036854775808100m'],
  ])('%s -> %s', (input, expected) => {
    expect(canonicalQuantity(input)).toBe(expected);
  });
});

// Read from apimachinery v0.36.3 (the API server this project runs) with ParseQuantity and
// String(), for behaviour the upstream tests leave out.
describe('as the v1.36 API server does', () => {
  it.each([
    // Its fast path keeps the input as the printed form on a heuristic that also admits
    // non-canonical spellings (kubernetes/kubernetes#138165); the API server echoes them.
    ['+1', '+1'],
    ['01', '01'],
    ['1.500k', '1.500k'],
    ['1.234k', '1.234k'],
    ['1.001', '1.001'],
    ['1E3', '1E3'],
    ['1e+3', '1e+3'],
    ['1e03', '1e03'],
    ['1e0', '1e0'],
    ['1.Ki', '1.Ki'],
    ['01Ki', '01Ki'],
    ['+1Ki', '+1Ki'],
    // The same heuristic declines these, so they are canonicalized.
    ['1.5', '1500m'],
    ['1.08', '1080m'],
    ['2000', '2k'],
    ['8Ki', '8Ki'],
    ['1024Ki', '1Mi'],
    ['1536Ki', '1536Ki'],
    ['1.5Ki', '1536'],
    ['1.0Ki', '1Ki'],
    ['1953.125Ki', '2000000'],
    ['10Ki', '10Ki'],
    ['1e21', '1e21'],
    ['1.5e-7', '150e-9'],
    ['1.5e-10', '1e-9'],
    ['15e-10', '2e-9'],
    ['999999999999999999999e-30', '1e-9'],
    ['1000000000000000000001e-30', '2e-9'],
    ['0.00000000000000000000001Ki', '1n'],
    ['-0.0000000005', '-1n'],
    ['1023.9999999999Ki', '1048575999999898n'],
    ['7.999999999999999999Ei', '9223372036854775806847078496n'],
    // BinarySI is capped at 2^63-1 in magnitude; decimal formats are not capped.
    ['8Ei', '9223372036854775807'],
    ['-9Ei', '-9223372036854775807'],
    ['12E', '12E'],
    // Its scanner reads a number part without digits as zero when the fast path takes it...
    ['-', '0'],
    ['+', '0'],
    ['.', '0'],
    ['-.', '0'],
    ['Ki', '0'],
    ['e5', '0'],
    ['00', '0'],
    ['-0', '0'],
    // ... and exponents up to int32 are exact (upstream writes no digits out for them).
    ['1e2147483647', '10e2147483646'],
    ['-1e2147483647', '-10e2147483646'],
    ['1.5e2147483640', '1500e2147483637'],
    ['9223372036854776e2147483000', '922337203685477600e2147482998'],
  ])('%s -> %s', (input, expected) => {
    expect(canonicalQuantity(input)).toBe(expected);
  });

  it.each([
    ['Ki', 'BinarySI'],
    ['0.5Ki', 'BinarySI'],
    ['0.000000000001Ki', 'DecimalSI'],
    ['e5', 'DecimalExponent'],
    ['1.5e-7', 'DecimalExponent'],
    ['1E', 'DecimalSI'],
  ])('%s keeps the format %s', (input, format) => {
    expect(parseQuantity(input).format).toBe(format);
  });

  it.each([
    // ...and fails on it where the slow path has to read it as a decimal.
    ['Pi', NUMERIC_WRONG],
    ['-Ei', NUMERIC_WRONG],
    ['e-10', NUMERIC_WRONG],
    ['.e-10', NUMERIC_WRONG],
    ['1.1.1', FORMAT_WRONG],
    ['1Gx', FORMAT_WRONG],
    ['1gi', FORMAT_WRONG],
    ['1KI', FORMAT_WRONG],
    ['1,5Gi', FORMAT_WRONG],
    ['0x10', FORMAT_WRONG],
    ['1Gi ', FORMAT_WRONG],
    ['∞', FORMAT_WRONG],
    ['NaN', FORMAT_WRONG],
    ['Infinity', FORMAT_WRONG],
    // The CRD pattern for quantities admits fractional exponents; Kubernetes does not.
    ['1e1.5', FORMAT_WRONG],
    ['1e.5', FORMAT_WRONG],
    ['1E+', SUFFIX_WRONG],
    ['1Ki5', SUFFIX_WRONG],
    ['1kk', SUFFIX_WRONG],
    ['1e', SUFFIX_WRONG],
  ])('rejects %j: %s', (input, message) => {
    expect(parseError(input)).toBe(message);
  });
});

describe('where this follows upstream fixes rather than v1.36', () => {
  it('prints DecimalSI values past E with an exponent (v1.36: 1000E printed as 1)', () => {
    expect(canonicalQuantity('1000E')).toBe('1e21');
    expect(canonicalQuantity('100000000000000000000E')).toBe('100e36');
    expect(canonicalQuantity('-3071500913000.E')).toBe('-3071500913e21');
  });

  it('rejects exponents outside ±(2^31-1) (v1.36 truncated them: 1e4294967297 was 10)', () => {
    expect(parseError('1e4294967297')).toBe(SUFFIX_WRONG);
    expect(parseError('1e2147483648')).toBe(SUFFIX_WRONG);
    expect(parseError('1e-2147483648')).toBe(SUFFIX_WRONG);
    expect(parseError('1e99999999999999999999')).toBe(SUFFIX_WRONG);
    expect(canonicalQuantity('0e2147483647')).toBe('0');
  });

  it('rounds values far below 1n without hanging (v1.36 hangs on these)', () => {
    expect(canonicalQuantity('1e-2147483647')).toBe('1e-9');
    expect(canonicalQuantity('-7e-2147483000')).toBe('-1e-9');
    expect(canonicalQuantity(`0.${'0'.repeat(100_000)}1`)).toBe('1n');
  });
});

describe('numbers, as a JSON client sends them', () => {
  it.each([
    [1024, '1024'],
    [0, '0'],
    [-0, '0'],
    [0.5, '500m'],
    [-1.5, '-1500m'],
    [1e21, '1e+21'], // JSON writes 1e+21, which the API server keeps as typed
    [1.5e-7, '150e-9'],
    [Number.MAX_SAFE_INTEGER, '9007199254740991'],
  ])('%d -> %s', (input, expected) => {
    expect(canonicalQuantity(input)).toBe(expected);
  });

  it.each([NaN, Infinity, -Infinity])('rejects %d', (input) => {
    expect(parseError(input)).toBe(FORMAT_WRONG);
  });
});

describe('quantityToBytes', () => {
  it.each([
    ['1Gi', 1073741824n],
    ['1.5Gi', 1610612736n],
    ['1e9', 1000000000n],
    ['0', 0n],
    ['1', 1n],
    ['1m', 1n],
    ['1n', 1n],
    ['1.001', 2n],
    ['0.1', 1n],
    ['999m', 1n],
    ['1001m', 2n],
    ['100.035Ki', 102436n],
    ['1023.9999999999Ki', 1048576n],
    ['8Ei', MAX_INT64],
    ['12E', 12000000000000000000n], // no int64 overflow, unlike Value()
    ['1e21', 10n ** 21n],
    // Away from zero, as Value() rounds on its int64 path (its big-decimal path does not).
    ['-1.5', -2n],
    ['-1m', -1n],
    ['-0.0000000005', -1n],
    ['-100.035Ki', -102436n],
  ])('%s is %d', (input, bytes) => {
    expect(quantityToBytes(parseQuantity(input))).toBe(bytes);
  });

  it('refuses to write out astronomically large values', () => {
    const huge = parseQuantity('1e2147483647');
    expect(() => quantityToBytes(huge)).toThrow(QuantityError);
    expect(quantityToBytes(parseQuantity('1e-2147483647'))).toBe(1n);
  });
});

describe('compareQuantities and isZero', () => {
  it.each([
    // Upstream TestQuantityCmp.
    ['0', '0', 0],
    ['100m', '50m', 1],
    ['50m', '100m', -1],
    ['10000T', '100Gi', 1],
    // Across formats and magnitudes.
    ['1Ki', '1024', 0],
    ['1Ki', '1.024k', 0],
    ['1G', '1e9', 0],
    ['1Gi', '1G', 1],
    ['-1Gi', '-1G', -1],
    ['-1', '1n', -1],
    ['1e2147483647', '9Ei', 1],
    ['-1e2147483647', '-9Ei', -1],
    ['1e-2147483647', '1n', 0],
    ['1.0000000001', '1', 1],
    ['0', '-0', 0],
  ])('%s vs %s: %d', (a, b, expected) => {
    expect(compareQuantities(parseQuantity(a), parseQuantity(b))).toBe(expected);
    expect(compareQuantities(parseQuantity(b), parseQuantity(a))).toBe(-expected || 0);
  });

  it.each([
    ['0', true],
    ['0Ki', true],
    ['-0.0e5', true],
    ['.', true],
    ['1n', false],
    ['0.0000000000001', false], // rounds up to 1n
  ])('isZero(%s) is %s', (input, expected) => {
    expect(isZero(parseQuantity(input))).toBe(expected);
  });
});

describe('validateQuantity', () => {
  const path = 'spec.jetStream.memStorage.size';

  it.each(['1Gi', '500M', '0', 1024, 0.5])('accepts %j', (input) => {
    expect(validateQuantity(input, path)).toBeUndefined();
  });

  it.each([
    ['1Gx', `${path}: Invalid value: "1Gx": ${FORMAT_WRONG}`],
    ['', `${path}: Invalid value: "": ${FORMAT_WRONG}`],
    ['1Pi5', `${path}: Invalid value: "1Pi5": ${SUFFIX_WRONG}`],
    ['Pi', `${path}: Invalid value: "Pi": ${NUMERIC_WRONG}`],
    ['1e4294967297', `${path}: Invalid value: "1e4294967297": ${SUFFIX_WRONG}`],
    [NaN, `${path}: Invalid value: NaN: ${FORMAT_WRONG}`],
    [Infinity, `${path}: Invalid value: +Inf: ${FORMAT_WRONG}`],
    [true, `${path}: Invalid value: true: ${FORMAT_WRONG}`],
    [null, `${path}: Invalid value: "null": ${FORMAT_WRONG}`],
    [undefined, `${path}: Invalid value: "null": ${FORMAT_WRONG}`],
    [{ size: 1 }, `${path}: Invalid value: {"size":1}: ${FORMAT_WRONG}`],
    [['1Gi'], `${path}: Invalid value: ["1Gi"]: ${FORMAT_WRONG}`],
  ])('rejects %j', (input, message) => {
    expect(validateQuantity(input, path)).toBe(message);
  });
});

describe('values', () => {
  it('are frozen', () => {
    const value = parseQuantity('1Gi');
    expect(Object.isFrozen(value)).toBe(true);
    expect(Object.isFrozen(parseQuantity('1.5Gi'))).toBe(true);
  });

  it('QuantityError is an Error with its own name', () => {
    const err = new QuantityError('x');
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('QuantityError');
  });
});

// ---------------------------------------------------------------------------------------------
// Properties.

const BINARY = ['Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei'] as const;
const DECIMAL = ['k', 'M', 'G', 'T', 'P', 'E'] as const;
const SUB_UNIT = ['m', 'u', 'n'] as const;

const digitString = (minLength: number, maxLength: number): fc.Arbitrary<string> =>
  fc.string({ unit: fc.constantFrom(...'0123456789'.split('')), minLength, maxLength });

/** Exponent text: optional sign, optional leading zeros, a value within `max`. */
const exponentText = (max: number): fc.Arbitrary<string> =>
  fc
    .tuple(
      fc.constantFrom('e', 'E'),
      fc.integer({ min: -max, max }),
      fc.boolean(),
      fc.nat({ max: 2 }),
    )
    .map(
      ([e, n, plus, zeros]) =>
        `${e}${n < 0 ? '-' : plus ? '+' : ''}${'0'.repeat(zeros)}${Math.abs(n)}`,
    );

/**
 * Strings in the shape of the CRD pattern for quantities,
 * `^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?…))?$`,
 * with whole exponents: Kubernetes rejects the fractional ones the pattern also admits.
 */
const quantityText = (maxExponent: number): fc.Arbitrary<string> =>
  fc
    .tuple(
      fc.constantFrom('', '+', '-'),
      fc.oneof(
        fc
          .tuple(digitString(1, 24), fc.option(digitString(0, 24)))
          .map(([int, frac]) => (frac === null ? int : `${int}.${frac}`)),
        digitString(1, 24).map((frac) => `.${frac}`),
      ),
      fc.oneof(fc.constantFrom('', ...BINARY, ...DECIMAL, ...SUB_UNIT), exponentText(maxExponent)),
    )
    .map((parts) => parts.join(''));

/** Mostly ordinary quantities: few digits, small exponents. */
const everydayText = fc
  .tuple(
    fc.constantFrom('', '-'),
    fc.bigInt({ min: 0n, max: 10n ** 12n }),
    fc.option(digitString(1, 4)),
    fc.oneof(fc.constantFrom('', ...BINARY, ...DECIMAL, ...SUB_UNIT), exponentText(12)),
  )
  .map(([sign, int, frac, suffix]) => `${sign}${int}${frac === null ? '' : `.${frac}`}${suffix}`);

const anyText = fc.oneof(quantityText(40), everydayText);

describe('properties', () => {
  // Not quite a fixed point, as in Kubernetes (CanonicalizeBytes): a binary-suffixed value that
  // is a whole number of bytes but no multiple of 1024 is printed with no suffix, and a number
  // with no suffix reads back as decimal. One more round settles it.
  it('a binary value that is no multiple of 1024 is printed without a suffix, as Kubernetes does', () => {
    expect(canonicalQuantity('131258023937.5Ki')).toBe('134408216512000');
    expect(canonicalQuantity('134408216512000')).toBe('134408216512k');
  });

  it('the canonical form of the canonical form is a fixed point', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const once = canonicalQuantity(text);
        const twice = canonicalQuantity(once);
        expect(canonicalQuantity(twice)).toBe(twice);
        // Only that one case changes on the second round, and never the value.
        if (twice !== once) {
          expect(parseQuantity(text).format).toBe('BinarySI');
          expect(once).toMatch(/^-?\d+$/);
          expect(compareQuantities(parseQuantity(twice), parseQuantity(once))).toBe(0);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('the canonical form keeps the value', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const value = parseQuantity(text);
        expect(compareQuantities(parseQuantity(formatQuantity(value)), value)).toBe(0);
      }),
      { numRuns: 2000 },
    );
  });

  it('bytes are monotonic with compare, and round up by less than one', () => {
    fc.assert(
      fc.property(anyText, anyText, (textA, textB) => {
        const a = parseQuantity(textA);
        const b = parseQuantity(textB);
        const order = compareQuantities(a, b);
        const [bytesA, bytesB] = [quantityToBytes(a), quantityToBytes(b)];
        if (order <= 0) expect(bytesA <= bytesB).toBe(true);
        if (order >= 0) expect(bytesA >= bytesB).toBe(true);
        // Away from zero: |bytes| >= |a| > |bytes| - 1.
        const magnitude = bytesA < 0n ? -bytesA : bytesA;
        const abs = parseQuantity(textA.replace(/^[+-]/, ''));
        expect(compareQuantities(parseQuantity(String(magnitude)), abs)).toBeGreaterThanOrEqual(0);
        if (magnitude > 0n) {
          expect(compareQuantities(parseQuantity(String(magnitude - 1n)), abs)).toBe(-1);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('compare is antisymmetric and agrees with equal canonical forms', () => {
    fc.assert(
      fc.property(anyText, anyText, (textA, textB) => {
        const a = parseQuantity(textA);
        const b = parseQuantity(textB);
        expect(compareQuantities(a, b)).toBe(-compareQuantities(b, a) || 0);
        if (canonicalQuantity(textA) === canonicalQuantity(textB)) {
          expect(compareQuantities(a, b)).toBe(0);
        }
      }),
    );
  });

  it('strings in the quantity shape never throw, whatever their exponent', () => {
    fc.assert(
      fc.property(quantityText(2147483647), (text) => {
        expect(typeof canonicalQuantity(text)).toBe('string');
        expect(validateQuantity(text, 'spec.size')).toBeUndefined();
      }),
      { numRuns: 3000 },
    );
  });

  it('junk always throws QuantityError', () => {
    // One character no quantity contains: common ASCII mistakes, or any other code point.
    const junkChar = fc.oneof(
      fc.constantFrom(' ', '\t', '\n', ',', '_', '/', '*', 'x', 'g', 'I', 'Ｋ', '∞', '\0'),
      fc
        .integer({ min: 0, max: 0x10ffff })
        .filter((cp) => cp < 0xd800 || cp > 0xdfff)
        .map((cp) => String.fromCodePoint(cp))
        .filter((c) => !/[0-9.+\-eEinumkKMGTP]/.test(c)),
    );
    // Around it, text that is close to a quantity, so the junk is the only thing wrong.
    const nearQuantity = fc.oneof(
      anyText,
      fc.string({ unit: fc.constantFrom(...'0123456789.+-eEinumkKMGTP'.split('')), maxLength: 8 }),
    );
    fc.assert(
      fc.property(
        fc.oneof(fc.constant(''), nearQuantity),
        junkChar,
        fc.oneof(fc.constant(''), nearQuantity),
        (before, junk, after) => {
          expect(() => parseQuantity(before + junk + after)).toThrow(QuantityError);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('any string either parses or throws QuantityError, never anything else', () => {
    const alphabet = fc.constantFrom(...'0123456789.+-eEinumkKMGTP x'.split(''));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: alphabet, maxLength: 12 }),
          fc.string({ unit: 'binary', maxLength: 16 }),
        ),
        (text) => {
          try {
            parseQuantity(text);
          } catch (err) {
            expect(err).toBeInstanceOf(QuantityError);
          }
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('accepts exactly the language of upstream’s scanner', () => {
    // Upstream's rules, restated: a sign, digits and at most one point, then a known suffix
    // or an int32 exponent. A number part without digits counts as zero except where upstream
    // reads it as a decimal: after Pi or Ei, or with an exponent below -9.
    const accepts = (text: string): boolean => {
      const m = /^[+-]?([0-9]*)(?:\.([0-9]*))?([eEinumkKMGTP]*)([+-]?[0-9]*)$/.exec(text);
      if (text === '' || m === null) return false;
      const hasDigits = `${m[1] ?? ''}${m[2] ?? ''}`.length > 0;
      const suffix = `${m[3] ?? ''}${m[4] ?? ''}`;
      if (['', ...BINARY, ...DECIMAL, ...SUB_UNIT].includes(suffix)) {
        return hasDigits || (suffix !== 'Pi' && suffix !== 'Ei');
      }
      const exponent = /^[eE]([+-]?[0-9]+)$/.exec(suffix)?.[1];
      if (exponent === undefined) return false;
      const value = BigInt(exponent);
      if (value < -2147483647n || value > 2147483647n) return false;
      return hasDigits || value >= -9n;
    };
    const alphabet = fc.constantFrom(...'0123456789.+-eEinumkKMGTP'.split(''));
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: alphabet, maxLength: 10 }), anyText), (text) => {
        let parsed = true;
        try {
          parseQuantity(text);
        } catch {
          parsed = false;
        }
        expect(parsed).toBe(accepts(text));
      }),
      { numRuns: 5000 },
    );
  });

  it('binary suffixes scale by powers of 1024, capped at 2^63-1', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 10n ** 20n }),
        fc.integer({ min: 1, max: 6 }),
        (n, power) => {
          const text = `${n}${BINARY[power - 1] ?? ''}`;
          const expected = n * 1024n ** BigInt(power);
          const capped = expected > MAX_INT64 ? MAX_INT64 : expected;
          expect(quantityToBytes(parseQuantity(text))).toBe(capped);
          expect(quantityToBytes(parseQuantity(`-${text}`))).toBe(-capped);
        },
      ),
    );
  });

  it('decimal suffixes scale by powers of 1000, without a cap', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 10n ** 30n }),
        fc.integer({ min: 1, max: 6 }),
        (n, power) => {
          const text = `${n}${DECIMAL[power - 1] ?? ''}`;
          expect(quantityToBytes(parseQuantity(text))).toBe(n * 1000n ** BigInt(power));
          const exponentForm = `${n}e${3 * power}`;
          expect(quantityToBytes(parseQuantity(exponentForm))).toBe(n * 1000n ** BigInt(power));
        },
      ),
    );
  });

  it('fractions with any suffix round up to whole bytes', () => {
    const scales: [string, bigint, bigint][] = [
      ...BINARY.map((s, i): [string, bigint, bigint] => [s, 1024n ** BigInt(i + 1), 1n]),
      ...DECIMAL.map((s, i): [string, bigint, bigint] => [s, 1000n ** BigInt(i + 1), 1n]),
      ...SUB_UNIT.map((s, i): [string, bigint, bigint] => [s, 1n, 1000n ** BigInt(i + 1)]),
      ['', 1n, 1n],
    ];
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 10n ** 15n }),
        digitString(1, 15),
        fc.constantFrom(...scales),
        (int, frac, [suffix, multiplier, divisor]) => {
          // (int.frac × multiplier / divisor), rounded up.
          const numerator = (int * 10n ** BigInt(frac.length) + BigInt(frac)) * multiplier;
          const denominator = 10n ** BigInt(frac.length) * divisor;
          let expected = (numerator + denominator - 1n) / denominator;
          if (multiplier > 1n && divisor === 1n && suffix.endsWith('i') && expected > MAX_INT64) {
            expected = MAX_INT64;
          }
          expect(quantityToBytes(parseQuantity(`${int}.${frac}${suffix}`))).toBe(expected);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('canonicalResourceQuantity', () => {
  test.each([
    ['100u', '1m'],
    ['0.0001', '1m'],
    ['1500u', '2m'],
    ['1.5Gi', '1536Mi'],
    ['500m', '500m'],
    ['0', '0'],
    ['1000000n', '1m'],
  ])('%s is stored in a ResourceList as %s', (input, stored) => {
    expect(canonicalResourceQuantity(input)).toBe(stored);
  });
});
