// The shapes every layer shares: a Kubernetes object as plain JSON, who a request comes from,
// and the API's time format.
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name?: string; namespace?: string; uid?: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** An object's identity, enough to address it. */
export interface ObjectRef {
  readonly apiVersion: string;
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
}

export function refOf(object: KubeObject): ObjectRef {
  return {
    apiVersion: object.apiVersion,
    kind: object.kind,
    namespace: object.metadata.namespace,
    name: object.metadata.name ?? '',
  };
}

/** `Kind namespace/name`, for logs, events and messages. */
export function describeObject(object: KubeObject | ObjectRef): string {
  const ref = 'metadata' in object ? refOf(object) : object;
  return `${ref.kind} ${ref.namespace ?? ''}/${ref.name}`;
}

/** authentication.k8s.io UserInfo: who the API server takes a client for. */
export interface UserInfo {
  readonly username: string;
  readonly uid?: string;
  readonly groups: readonly string[];
}

/** metav1.Time as the API writes it: RFC 3339 with second precision. */
export function kubeTime(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}
