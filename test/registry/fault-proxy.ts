// A loopback HTTP proxy in front of a real registry that records requests and injects faults the
// real registry never produces on demand: 5xx with Retry-After, dropped connections, refused upload
// forms, redirects to another origin.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  readonly method: string;
  readonly path: string;
  readonly authorization: boolean;
  readonly chunked: boolean;
  /** The real registry's status and Location, once it answered (unset for faulted requests). */
  status?: number;
  location?: string;
}

/** Return true when the fault handled the request (the registry never sees it). */
export type Fault = (req: IncomingMessage, res: ServerResponse, seen: readonly SeenRequest[]) => boolean;

export interface FaultProxy {
  readonly host: string;
  readonly seen: SeenRequest[];
  fault: Fault | undefined;
  close(): Promise<void>;
}

export async function startFaultProxy(upstream: string, port = 0): Promise<FaultProxy> {
  const [uHost, uPort] = upstream.split(':');
  const seen: SeenRequest[] = [];
  const proxy: { fault: Fault | undefined } = { fault: undefined };
  const server: Server = createServer((req, res) => {
    const record: SeenRequest = {
      method: req.method ?? '',
      path: req.url ?? '',
      authorization: req.headers.authorization !== undefined,
      chunked: req.headers['transfer-encoding'] === 'chunked',
    };
    seen.push(record);
    if (proxy.fault?.(req, res, seen)) return;
    const up = request(
      { host: uHost, port: Number(uPort), method: req.method, path: req.url, headers: req.headers },
      (ur) => {
        record.status = ur.statusCode;
        if (typeof ur.headers.location === 'string') record.location = ur.headers.location;
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    get fault() {
      return proxy.fault;
    },
    set fault(f) {
      proxy.fault = f;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Drains a request body, then answers. */
export function reply(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  headers: Record<string, string> = {},
  body = '',
): void {
  req.resume();
  req.on('end', () => {
    res.writeHead(status, headers);
    res.end(body);
  });
}
