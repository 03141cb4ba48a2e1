export default async function stopControlPlane(): Promise<void> {
  await globalThis.localPlane?.stop();
  globalThis.localPlane = undefined;
}
