// A small HTTP proxy of the kind CI runners sit behind (squid, a corporate proxy): CONNECT
// tunnels for https URLs, absolute-form forwarding for http URLs, optionally Basic
// Proxy-Authorization. It records what went through it, so tests can check that a request did (or
// did not) take the proxy.
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';

export interface ProxyRecord {
  /** `CONNECT` or the forwarded method. */
  readonly method: string;
  /** `host:port` for CONNECT, the absolute URL for a forwarded request. */
  readonly target: string;
  /** The Proxy-Authorization header as received, if any. */
  readonly auth: string | undefined;
  /** The status the proxy answered (407, or 200 for a tunnel / the upstream's status). */
  status: number;
}

export interface HttpProxy {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  readonly records: ProxyRecord[];
  close(): Promise<void>;
}

export interface HttpProxyOptions {
  /** user:password the proxy wants in Proxy-Authorization (Basic); none: it lets everyone through. */
  readonly credentials?: string;
}

/** A port ≥ 20000 with a random offset, so parallel test files do not collide. */
const randomPort = (): number => 20000 + Math.floor(Math.random() * 30000);

export async function startHttpProxy(o: HttpProxyOptions = {}): Promise<HttpProxy> {
  const records: ProxyRecord[] = [];
  const sockets = new Set<Socket>();
  const allowed = (req: IncomingMessage): boolean =>
    !o.credentials ||
    req.headers['proxy-authorization'] === `Basic ${Buffer.from(o.credentials).toString('base64')}`;

  const server: Server = createServer((req, res) => {
    const rec: ProxyRecord = {
      method: req.method ?? '',
      target: req.url ?? '',
      auth: req.headers['proxy-authorization'],
      status: 0,
    };
    records.push(rec);
    if (!allowed(req)) {
      rec.status = 407;
      res.writeHead(407, { 'proxy-authenticate': 'Basic realm="hx-i-proxy"', 'content-length': '0' });
      res.end();
      return;
    }
    let target: URL;
    try {
      target = new URL(req.url ?? '');
    } catch {
      rec.status = 400;
      res.writeHead(400).end();
      return;
    }
    const headers = { ...req.headers };
    delete headers['proxy-authorization'];
    delete headers['proxy-connection'];
    const up = httpRequest(target, { method: req.method, headers }, (upRes) => {
      rec.status = upRes.statusCode ?? 0;
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => {
      rec.status = 502;
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    const rec: ProxyRecord = {
      method: 'CONNECT',
      target: req.url ?? '',
      auth: req.headers['proxy-authorization'],
      status: 0,
    };
    records.push(rec);
    client.on('error', () => undefined);
    if (!allowed(req)) {
      rec.status = 407;
      client.end(
        'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="hx-i-proxy"\r\nContent-Length: 0\r\n\r\n',
      );
      return;
    }
    const [host, port] = (req.url ?? '').split(':');
    const up = connect(Number(port), host ?? '', () => {
      rec.status = 200;
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    up.on('error', () => {
      rec.status = 502;
      client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n');
    });
  });

  for (let i = 0; ; i++) {
    const port = randomPort();
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
      break;
    } catch (e) {
      if (i >= 20) throw e;
    }
  }
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    records,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
