import type { IncomingMessage } from 'node:http';
import proxyaddr from 'proxy-addr';

export type TrustProxy = (address: string, hop: number) => boolean;

/**
 * TRUST_PROXY as Express reads `trust proxy`: true (trust every hop), false (none), a number of
 * hops, or a comma-separated list of addresses, subnets and names such as `loopback`.
 */
export function trustProxy(setting: boolean | string): TrustProxy {
  if (typeof setting === 'boolean') return () => setting;
  if (/^\d+$/.test(setting)) {
    const hops = Number(setting);
    return (_address, hop) => hop < hops;
  }
  return proxyaddr.compile(setting.split(',').map((part) => part.trim()));
}

/** The client's address, for HTTP requests and websocket upgrades alike: X-Forwarded-For is believed only from trusted proxies. */
export function clientAddress(request: IncomingMessage, trust: TrustProxy): string {
  return proxyaddr(request, trust);
}
