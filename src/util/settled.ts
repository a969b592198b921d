/** Whether a promise resolved (rather than rejected), once it has settled; never rejects. */
export function resolvedOk(promise: Promise<unknown>): Promise<boolean> {
  return promise.then(
    () => true,
    () => false,
  );
}
