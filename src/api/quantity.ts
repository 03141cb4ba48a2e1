/**
 * Kubernetes resource quantities (`1Gi`, `500M`, `1.5Gi`, `1e9`, `0`), read and printed the way
 * the API server does (k8s.io/apimachinery/pkg/api/resource, v0.36.3), so that what the webhook
 * accepts and the canonical forms it computes are the API server's own.
 *
 * The semantics are upstream's; the code is not. Values are exact: a bigint coefficient and a
 * power of ten, never a float. Where upstream's behaviour is a bug that it has fixed since, or
 * hangs, this follows the fix (see parseQuantity and formatQuantity).
 */
import { LruCache } from '../base/lru.ts';

/** An exact quantity, as parseQuantity makes it (the fields are plain data to read). */
export interface Quantity {
  /** The value is exactly `coefficient × 10^exponent`. */
  readonly coefficient: bigint;
  readonly exponent: number;
  /** The suffix family that Kubernetes remembers from the input and prints the value in. */
  readonly format: 'BinarySI' | 'DecimalSI' | 'DecimalExponent';
  /**
   * The input itself, where Kubernetes keeps it as the printed form. Its integer fast path does
   * that on a heuristic that also lets through spellings that are not canonical (`+1`, `01`,
   * `1.500k`, `1E3`; kubernetes/kubernetes#138165), and the API server echoes them back.
   */
  readonly verbatim?: string;
}

type Format = Quantity['format'];

/** A string or number that is not a quantity; the message is Kubernetes' own. */
export class QuantityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QuantityError';
  }
}

// Upstream's error texts, verbatim: users compare them with what kubectl shows.
const FORMAT_WRONG =
  "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const NUMERIC_WRONG = 'unable to parse numeric part of quantity';
const SUFFIX_WRONG = "unable to parse quantity's suffix";

const MAX_INT32 = 2147483647;
const MAX_INT64 = 2n ** 63n - 1n;
const NANO = -9;
const MILLI = -3;
// Beyond this many digits a value is not written out in full: 10^100000 already costs
// milliseconds, and only quantityToBytes and a hand-made BinarySI value would ever need it.
const MAX_EXPANDED_DIGITS = 100_000;

interface Suffix {
  readonly base: 2 | 10;
  readonly exponent: number;
  readonly format: Format;
}

const SUFFIXES: ReadonlyMap<string, Suffix> = new Map<string, Suffix>([
  ['', { base: 10, exponent: 0, format: 'DecimalSI' }],
  ['n', { base: 10, exponent: -9, format: 'DecimalSI' }],
  ['u', { base: 10, exponent: -6, format: 'DecimalSI' }],
  ['m', { base: 10, exponent: -3, format: 'DecimalSI' }],
  ['k', { base: 10, exponent: 3, format: 'DecimalSI' }],
  ['M', { base: 10, exponent: 6, format: 'DecimalSI' }],
  ['G', { base: 10, exponent: 9, format: 'DecimalSI' }],
  ['T', { base: 10, exponent: 12, format: 'DecimalSI' }],
  ['P', { base: 10, exponent: 15, format: 'DecimalSI' }],
  ['E', { base: 10, exponent: 18, format: 'DecimalSI' }],
  ['Ki', { base: 2, exponent: 10, format: 'BinarySI' }],
  ['Mi', { base: 2, exponent: 20, format: 'BinarySI' }],
  ['Gi', { base: 2, exponent: 30, format: 'BinarySI' }],
  ['Ti', { base: 2, exponent: 40, format: 'BinarySI' }],
  ['Pi', { base: 2, exponent: 50, format: 'BinarySI' }],
  ['Ei', { base: 2, exponent: 60, format: 'BinarySI' }],
]);

const DECIMAL_SI_SUFFIXES: ReadonlyMap<number, string> = new Map(
  [...SUFFIXES].filter(([, s]) => s.base === 10).map(([text, s]) => [s.exponent, text]),
);
// Index = power of 1024. 1024^0 has no suffix.
const BINARY_SI_SUFFIXES = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei'];

// The letters upstream's scanner takes as a suffix before an optional signed integer.
const SUFFIX_LETTERS = new Set('eEinumkKMGTP');

interface Scanned {
  readonly negative: boolean;
  /** Whether the number part has any digit at all (`.`, `-` and `` have none). */
  readonly hasDigits: boolean;
  /** Integer digits without leading zeros, or `0`. */
  readonly num: string;
  /** Fraction digits as written. */
  readonly denom: string;
  readonly suffix: string;
}

const isDigit = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '9';

/** Splits like upstream's scanner, which accepts more than the documented grammar (`.`, `Ki`). */
function scan(str: string): Scanned {
  const end = str.length;
  let pos = 0;
  const negative = str.startsWith('-');
  if (negative || str.startsWith('+')) pos++;
  const signEnd = pos;
  while (str[pos] === '0') pos++;
  const numStart = pos;
  while (isDigit(str[pos])) pos++;
  const num = str.slice(numStart, pos) || '0';
  let denom = '';
  if (str[pos] === '.') {
    const denomStart = ++pos;
    while (isDigit(str[pos])) pos++;
    denom = str.slice(denomStart, pos);
  }
  const hasDigits = numStart > signEnd || num !== '0' || denom !== '';
  const suffixStart = pos;
  while (pos < end && SUFFIX_LETTERS.has(str.charAt(pos))) pos++;
  if (str[pos] === '+' || str[pos] === '-') pos++;
  while (isDigit(str[pos])) pos++;
  if (pos < end) throw new QuantityError(FORMAT_WRONG);
  return { negative, hasDigits, num, denom, suffix: str.slice(suffixStart) };
}

function interpretSuffix(suffix: string): Suffix {
  const known = SUFFIXES.get(suffix);
  if (known) return known;
  const digits = suffix.slice(1);
  if ((suffix.startsWith('e') || suffix.startsWith('E')) && /^[+-]?[0-9]+$/.test(digits)) {
    const exponent = BigInt(digits);
    // Upstream truncated larger exponents to int32 (1e4294967297 was 10) until
    // kubernetes/kubernetes#141203 rejected them; -MaxInt32 because the scale gets negated.
    if (exponent >= -MAX_INT32 && exponent <= MAX_INT32) {
      return { base: 10, exponent: Number(exponent), format: 'DecimalExponent' };
    }
  }
  throw new QuantityError(SUFFIX_WRONG);
}

/**
 * Whether upstream takes its int64 fast path. That decides two visible things: whether the input
 * is kept as the printed form, and whether a number part without digits fails (only the slow
 * path reads it as a decimal).
 */
function takesFastPath(s: Scanned, suffix: Suffix): boolean {
  if (suffix.format === 'BinarySI') {
    // Upstream's rough precision estimate: 15 - len(num) - exponent*3/10 - 1 >= 0.
    return s.denom === '' && s.num.length <= 14 - (suffix.exponent * 3) / 10;
  }
  return s.num.length + s.denom.length <= 18 && suffix.exponent - s.denom.length >= NANO;
}

function keepsInput(s: Scanned, suffix: Suffix): boolean {
  if (suffix.format === 'BinarySI') return Number(s.num) % 8 !== 0;
  const shifted = s.num + s.denom;
  return (
    (suffix.exponent - s.denom.length) % 3 === 0 &&
    !shifted.endsWith('000') &&
    !shifted.startsWith('0')
  );
}

// A judgement of a NATS spec parses the same few quantities (1Gi, 500m, ...) a dozen times,
// and each parse is bigint work; the results are frozen, so they can be shared.
const PARSED = new LruCache<string, Quantity>(256, { maxKeyLength: 32 });

/**
 * Parses a quantity as Kubernetes' ParseQuantity does: non-zero values finer than 1n round away
 * from zero to a multiple of 1n, BinarySI values are capped at 2^63-1 in magnitude, and decimal
 * exponents beyond ±(2^31-1) are rejected. A number is read as the text JSON gives it
 * (`String(n)`), which is what the API server parses when a client sends that number.
 */
export function parseQuantity(input: string | number): Quantity {
  // String() also keeps a non-string from a plain-JS caller on the QuantityError path.
  const str = typeof input === 'string' ? input : String(input);
  return PARSED.getOrCompute(str, () => parseText(str));
}

function parseText(str: string): Quantity {
  if (str === '') throw new QuantityError(FORMAT_WRONG);
  const scanned = scan(str);
  const suffix = interpretSuffix(scanned.suffix);
  const fast = takesFastPath(scanned, suffix);
  if (!fast && !scanned.hasDigits) throw new QuantityError(NUMERIC_WRONG);

  // Trailing zeros go to the exponent on the string, before any bigint work.
  const digits = scanned.num + scanned.denom;
  let last = digits.length;
  while (last > 0 && digits[last - 1] === '0') last--;
  let coefficient = last === 0 ? 0n : BigInt(digits.slice(0, last));
  let exponent =
    coefficient === 0n
      ? 0
      : digits.length - last - scanned.denom.length + (suffix.base === 10 ? suffix.exponent : 0);
  if (suffix.base === 2) coefficient <<= BigInt(suffix.exponent);
  if (scanned.negative) coefficient = -coefficient;

  // If you ask for some of a resource you get some: anything finer than 1n rounds up to it.
  if (coefficient !== 0n && exponent < NANO) {
    coefficient = divideAwayFromZero(coefficient, NANO - exponent);
    exponent = NANO;
  }
  let format = suffix.format;
  if (format === 'BinarySI') {
    if (compareMagnitudes(coefficient, exponent, MAX_INT64, 0) > 0) {
      coefficient = coefficient < 0n ? -MAX_INT64 : MAX_INT64;
      exponent = 0;
    }
    // A binary suffix cannot print a fraction below one; upstream switches such values over.
    if (coefficient !== 0n && compareMagnitudes(coefficient, exponent, 1n, 0) < 0) {
      format = 'DecimalSI';
    }
  }
  const normalized = stripTens(coefficient, exponent);
  return Object.freeze({
    ...normalized,
    format,
    ...(fast && keepsInput(scanned, suffix) ? { verbatim: str } : {}),
  });
}

/**
 * Prints a quantity as Kubernetes' Quantity.String() does: the largest suffix of its format that
 * needs no fraction, BinarySI falling back to DecimalSI below 1024 and for fractions.
 * One deliberate difference: a DecimalSI value beyond the `E` suffix prints in exponent form
 * (`1000E` gives `1e21`), as upstream does since kubernetes/kubernetes#140459; v1.36 dropped
 * the exponent and printed `1`.
 */
export function formatQuantity(q: Quantity): string {
  if (q.verbatim !== undefined) return q.verbatim;
  const { coefficient, exponent } = stripTens(q.coefficient, q.exponent);
  if (coefficient === 0n) return '0';
  if (
    q.format === 'BinarySI' &&
    exponent >= 0 &&
    compareMagnitudes(coefficient, exponent, 1024n, 0) >= 0
  ) {
    let mantissa = coefficient * pow10(exponent);
    let power = 0;
    while (mantissa % 1024n === 0n) {
      mantissa /= 1024n;
      power++;
    }
    const suffix = BINARY_SI_SUFFIXES[power];
    if (suffix !== undefined) return `${mantissa}${suffix}`;
    // Past Ei (only a hand-made value gets here; parsing caps at 2^63-1): print it exactly.
    return formatDecimal(coefficient, exponent, 'DecimalExponent');
  }
  return formatDecimal(
    coefficient,
    exponent,
    q.format === 'DecimalExponent' ? q.format : 'DecimalSI',
  );
}

function formatDecimal(coefficient: bigint, exponent: number, format: Format): string {
  // Round the exponent down to a multiple of three; the digits take up the difference.
  const shift = ((exponent % 3) + 3) % 3;
  const mantissa = coefficient * 10n ** BigInt(shift);
  const power = exponent - shift;
  const si = format === 'DecimalSI' ? DECIMAL_SI_SUFFIXES.get(power) : undefined;
  return `${mantissa}${si ?? (power === 0 ? '' : `e${power}`)}`;
}

/** The canonical form Kubernetes stores for `input`; throws QuantityError if it is invalid. */
export function canonicalQuantity(input: string | number): string {
  return formatQuantity(parseQuantity(input));
}

/**
 * The canonical form the API server stores for a value in a core/v1 ResourceList (container
 * resources, PVC requests): core/v1 defaulting first rounds such values up to milli precision,
 * so `100u` of CPU is stored as `1m`. Rendering children with this form keeps the applied value
 * equal to the stored one, so reconciles see no phantom difference.
 */
export function canonicalResourceQuantity(input: string | number): string {
  const q = parseQuantity(input);
  if (q.exponent >= MILLI) return formatQuantity(q);
  return formatQuantity(
    Object.freeze({
      ...stripTens(divideAwayFromZero(q.coefficient, MILLI - q.exponent), MILLI),
      format: q.format,
    }),
  );
}

/**
 * The value as an integer, rounded away from zero, as Quantity.Value() documents. Unlike
 * Value() it does not overflow past int64, and it rounds negative fractions away from zero on
 * every path: upstream's arbitrary-precision path gets them wrong (`-0.5n` comes out as 1).
 * Throws QuantityError for values too large to write out (over 100000 digits).
 */
export function quantityToBytes(q: Quantity): bigint {
  if (q.coefficient === 0n) return 0n;
  if (q.exponent >= 0) return q.coefficient * pow10(q.exponent);
  return divideAwayFromZero(q.coefficient, -q.exponent);
}

/** Orders two quantities by value, whatever their formats. */
export function compareQuantities(a: Quantity, b: Quantity): -1 | 0 | 1 {
  const signA = sign(a.coefficient);
  const signB = sign(b.coefficient);
  if (signA !== signB) return signA < signB ? -1 : 1;
  if (signA === 0) return 0;
  const byMagnitude = compareMagnitudes(a.coefficient, a.exponent, b.coefficient, b.exponent);
  return signA > 0 || byMagnitude === 0 ? byMagnitude : byMagnitude === 1 ? -1 : 1;
}

export function isZero(q: Quantity): boolean {
  return q.coefficient === 0n;
}

/**
 * A Kubernetes-style field error for a value that should be a quantity, or undefined if it is
 * one: `spec.x: Invalid value: "1Gx": quantities must match the regular expression '…'`.
 */
export function validateQuantity(input: unknown, path: string): string | undefined {
  if (typeof input === 'string' || typeof input === 'number') {
    try {
      parseQuantity(input);
      return undefined;
    } catch (err) {
      if (!(err instanceof QuantityError)) throw err;
      return `${path}: Invalid value: ${describe(input)}: ${err.message}`;
    }
  }
  // Kubernetes hands any other JSON value to the same parser, which rejects it on syntax.
  return `${path}: Invalid value: ${describe(input)}: ${FORMAT_WRONG}`;
}

// As field.Invalid prints a bad value: strings quoted, other scalars bare, null as "null".
function describe(value: unknown): string {
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return 'NaN';
    if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf';
    return String(value);
  }
  if (typeof value === 'boolean') return String(value);
  if (value === null || value === undefined) return '"null"';
  return JSON.stringify(value);
}

function sign(n: bigint): -1 | 0 | 1 {
  return n < 0n ? -1 : n > 0n ? 1 : 0;
}

function abs(n: bigint): bigint {
  return n < 0n ? -n : n;
}

function pow10(power: number): bigint {
  if (power > MAX_EXPANDED_DIGITS) {
    throw new QuantityError(`quantity has too many digits to write out (10^${power})`);
  }
  return 10n ** BigInt(power);
}

function digitCount(n: bigint): number {
  return abs(n).toString().length;
}

/** `coefficient / 10^places`, a non-exact result rounded away from zero. */
function divideAwayFromZero(coefficient: bigint, places: number): bigint {
  // Below the last digit only the rounding unit is left; 10^places may be too big to build.
  if (places >= digitCount(coefficient)) return BigInt(sign(coefficient));
  const divisor = 10n ** BigInt(places);
  const quotient = coefficient / divisor;
  if (quotient * divisor === coefficient) return quotient;
  return coefficient < 0n ? quotient - 1n : quotient + 1n;
}

/** Compares |a|·10^ea with |b|·10^eb without writing out either power. */
function compareMagnitudes(a: bigint, ea: number, b: bigint, eb: number): -1 | 0 | 1 {
  const absA = abs(a);
  const absB = abs(b);
  if (absA === 0n || absB === 0n) return sign(absA - absB);
  // Equal leading positions leave an exponent gap no larger than the digit counts.
  const leadA = digitCount(absA) + ea;
  const leadB = digitCount(absB) + eb;
  if (leadA !== leadB) return leadA < leadB ? -1 : 1;
  const scaledA = ea > eb ? absA * 10n ** BigInt(ea - eb) : absA;
  const scaledB = eb > ea ? absB * 10n ** BigInt(eb - ea) : absB;
  return sign(scaledA - scaledB);
}

/** Moves factors of ten from the coefficient to the exponent; zero gets exponent 0. */
function stripTens(
  coefficient: bigint,
  exponent: number,
): { coefficient: bigint; exponent: number } {
  if (coefficient === 0n) return { coefficient, exponent: 0 };
  let c = coefficient;
  let e = exponent;
  while (c % 10n === 0n) {
    c /= 10n;
    e++;
  }
  return { coefficient: c, exponent: e };
}
