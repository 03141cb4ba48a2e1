// Who the API server takes us for: the user name and groups of our own credentials.
import type { UserInfo } from '../base/object.ts';
import type { KubeClient } from './client.ts';

/** A SelfSubjectReview (authentication.k8s.io/v1, served since Kubernetes 1.28). */
export async function whoAmI(client: KubeClient): Promise<UserInfo> {
  const review = (await client.request({
    method: 'POST',
    path: '/apis/authentication.k8s.io/v1/selfsubjectreviews',
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
  })) as { status?: { userInfo?: { username?: string; groups?: string[] } } };
  const info = review.status?.userInfo;
  return { username: info?.username ?? '', groups: info?.groups ?? [] };
}
