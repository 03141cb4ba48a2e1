// Names of the objects rendered for one NATS resource.

/** The base name of every child: the CR name if it already says "nats", else `<name>-nats`. */
export function natsObjectName(crName: string): string {
  return crName.includes('nats') ? crName : `${crName}-nats`;
}

export interface ObjectNames {
  readonly base: string;
  readonly configMap: string;
  readonly secret: string;
  readonly service: string;
  readonly statefulSet: string;
  readonly podDisruptionBudget: string;
  readonly destinationRule: string;
  /** volumeClaimTemplates name; PVCs are `<this>-<statefulset>-<ordinal>`. */
  readonly volumeClaim: string;
}

export function objectNames(crName: string): ObjectNames {
  const base = natsObjectName(crName);
  return {
    base,
    configMap: `${base}-config`,
    secret: `${base}-secret`,
    service: base,
    statefulSet: base,
    podDisruptionBudget: base,
    destinationRule: base,
    volumeClaim: `${base}-js-pvc`,
  };
}

/** Stable DNS name of one pod of the StatefulSet through the headless Service. */
export function podDnsName(
  names: ObjectNames,
  namespace: string,
  ordinal: number,
  clusterDomain: string,
): string {
  return `${names.statefulSet}-${String(ordinal)}.${names.service}.${namespace}.svc.${clusterDomain}`;
}

/** The client URL reported in status.url: the real Service name, not the CR name. */
export function clientUrl(names: ObjectNames, namespace: string, clusterDomain: string): string {
  return `nats://${names.service}.${namespace}.svc.${clusterDomain}:4222`;
}
