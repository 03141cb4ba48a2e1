// One order for strings everywhere it must not depend on the locale: UTF-16 code units, as
// Array.prototype.sort() without a comparator, Go's string comparison for ASCII, and the order of
// RFC 3339 UTC timestamps. Never localeCompare: it asks ICU's collator (3 MB of RSS on first use)
// for an order that differs between machines.

export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
