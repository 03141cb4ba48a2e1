// The ConfigMap `<n>-config`: the nats.conf every server of the cluster reads.
import type { V1ConfigMap } from '@kubernetes/client-node';
import type { KubeObject } from '../base/object.ts';
import type { RenderContext, RenderInput } from './context.ts';
import { childMetadata } from './labels.ts';
import { objectNames } from './names.ts';
import { NATS_CONF_KEY, renderNatsConf } from './nats-conf.ts';

export function renderConfigMap(
  input: RenderInput,
  context: RenderContext,
): V1ConfigMap & KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: childMetadata(input, objectNames(input.name).configMap),
    data: { [NATS_CONF_KEY]: renderNatsConf(input, context) },
  } satisfies V1ConfigMap;
}
