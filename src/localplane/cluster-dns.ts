// Cluster names for a process on the host, as a pod with `dnsPolicy: ClusterFirstWithHostNet`
// has them: names under the cluster domain are answered by the local node's CoreDNS, everything
// else by the host's resolver as before. The host's resolver knows nothing of cluster.local, and
// changing the host's resolv.conf is not ours to do; this changes only the calling process.
import dns, { type LookupAddress, type LookupOptions } from 'node:dns';
import { syncBuiltinESMExports } from 'node:module';

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/** Routes `*.<domain>` lookups of this process to `server`; returns the undo. Idempotent. */
export function resolveClusterNames(server: string, domain: string): () => void {
  const original = dns.lookup;
  const resolver = new dns.Resolver({ timeout: 2_000, tries: 2 });
  resolver.setServers([server]);
  const suffix = `.${domain}`;
  const patched = (
    hostname: string,
    optionsOrCallback: LookupOptions | number | LookupCallback,
    maybeCallback?: LookupCallback,
  ): void => {
    const callback = typeof optionsOrCallback === 'function' ? optionsOrCallback : maybeCallback;
    if (callback === undefined) throw new TypeError('dns.lookup needs a callback');
    const options: LookupOptions =
      typeof optionsOrCallback === 'number'
        ? { family: optionsOrCallback }
        : typeof optionsOrCallback === 'object'
          ? optionsOrCallback
          : {};
    const name = hostname.replace(/\.$/, '');
    if (!name.endsWith(suffix) || options.family === 6) {
      (original as (h: string, o: LookupOptions, c: LookupCallback) => void)(
        hostname,
        options,
        callback,
      );
      return;
    }
    resolver.resolve4(name, (error, addresses) => {
      if (error !== null || addresses.length === 0) {
        const failure: NodeJS.ErrnoException =
          error ??
          Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
        callback(failure, options.all === true ? [] : '', 4);
        return;
      }
      if (options.all === true)
        callback(
          null,
          addresses.map((address) => ({ address, family: 4 })),
        );
      else callback(null, addresses[0] ?? '', 4);
    });
  };
  dns.lookup = patched as typeof dns.lookup;
  syncBuiltinESMExports();
  return () => {
    dns.lookup = original;
    syncBuiltinESMExports();
  };
}
