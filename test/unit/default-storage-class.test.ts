import { defaultStorageClassName } from '../../src/manager/admission.ts';

const DEFAULT = 'storageclass.kubernetes.io/is-default-class';
const BETA = 'storageclass.beta.kubernetes.io/is-default-class';

function sc(
  name: string,
  created: string,
  annotation?: string,
): {
  metadata: { name: string; creationTimestamp: string; annotations?: Record<string, string> };
} {
  return {
    metadata: {
      name,
      creationTimestamp: created,
      ...(annotation === undefined ? {} : { annotations: { [annotation]: 'true' } }),
    },
  };
}

describe('defaultStorageClassName', () => {
  it('picks the newest class marked default, by either annotation', () => {
    expect(
      defaultStorageClassName([
        sc('old', '2026-01-01T00:00:00Z', DEFAULT),
        sc('unmarked', '2026-12-01T00:00:00Z'),
        sc('new', '2026-06-01T00:00:00Z', BETA),
      ]),
    ).toBe('new');
  });

  it('picks the first by name of equally new ones, whatever the list order', () => {
    const same = '2026-03-01T10:00:00Z';
    expect(defaultStorageClassName([sc('b', same, DEFAULT), sc('a', same, DEFAULT)])).toBe('a');
  });

  it('has none when no class is marked, or the mark is not "true"', () => {
    expect(defaultStorageClassName([sc('x', '2026-01-01T00:00:00Z')])).toBeUndefined();
    const falsy = { metadata: { name: 'y', annotations: { [DEFAULT]: 'false' } } };
    expect(defaultStorageClassName([falsy])).toBeUndefined();
  });
});
