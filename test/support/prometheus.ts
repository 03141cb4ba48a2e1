// Totals read out of Prometheus text (the manager's /metrics, kube-apiserver's): tests and
// benchmarks count what happened from the processes' own metrics rather than trust a log.

/** The labels of one sample line, as written between the braces (`verb="GET",code="200"`). */
export type LabelText = string;

/**
 * The metric `name` summed over its samples whose labels `select` keeps (every sample by
 * default): a counter's total, or a gauge's value when it has one sample.
 */
export function metricTotal(
  text: string,
  name: string,
  select: (labels: LabelText) => boolean = () => true,
): number {
  let total = 0;
  for (const line of text.split('\n')) {
    const labelled = line.startsWith(`${name}{`);
    if (!labelled && !line.startsWith(`${name} `)) continue;
    const value = line.lastIndexOf(' ');
    const labels = labelled ? line.slice(name.length + 1, line.lastIndexOf('}', value)) : '';
    if (!select(labels)) continue;
    total += Number(line.slice(value + 1));
  }
  return total;
}
