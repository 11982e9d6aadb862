// The HAProxy config of `npm run start:cluster` (scripts/cluster/haproxy.ts), and deploy/haproxy.cfg:
// the settings the cluster relies on, and HAProxy itself accepting both (`haproxy -c`) where installed.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findHaproxy, haproxyConfig, MAX_CONNECTIONS_PER_PROCESS, SERVER_TIMEOUT_S } from '../../scripts/cluster/haproxy.js';

const config = haproxyConfig({
  bind: { host: '127.0.0.1', port: 4000 },
  servers: [
    { name: 'api1', host: '127.0.0.1', port: 41001 },
    { name: 'api2', host: '127.0.0.1', port: 41002 },
  ],
});
const deployConfig = readFileSync(new URL('../../deploy/haproxy.cfg', import.meta.url), 'utf8');
const directives = (text: string) =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));

describe('HAProxy config', () => {
  it('balances HTTP and websockets over the API processes, health-checked on /readyz', () => {
    const lines = directives(config);
    expect(lines).toContain('mode http');
    expect(lines).toContain('bind 127.0.0.1:4000');
    expect(lines).toContain('balance leastconn');
    expect(lines).toContain('option httpchk GET /readyz');
    expect(lines).toContain('http-check expect status 200');
    expect(lines).toContain('option forwardfor');
    expect(lines).toContain('timeout tunnel 1h');
    // A hung process's requests and upgrades fail once it would have been taken out (test/integration/cluster-failover.test.ts shows it).
    expect(lines).toContain(`timeout server ${SERVER_TIMEOUT_S}s`);
    expect(lines).toContain('option redispatch 1');
    expect(lines.filter((l) => l.startsWith('server '))).toEqual([
      'server api1 127.0.0.1:41001',
      'server api2 127.0.0.1:41002',
      'server api1 127.0.0.1:41001 track api/api1',
      'server api2 127.0.0.1:41002 track api/api2',
    ]);
  });

  it('sends requests over a few connections per process that it reuses, and websockets apart (test/integration/cluster-failover.test.ts)', () => {
    const backend = (name: string) => {
      const lines = directives(config);
      const start = lines.indexOf(`backend ${name}`);
      const end = lines.findIndex((l, i) => i > start && /^(frontend|backend)\b/.test(l));
      return lines.slice(start + 1, end === -1 ? undefined : end);
    };
    expect(directives(config)).toContain('use_backend websockets if { hdr(upgrade) -i websocket }');
    expect(directives(config)).not.toContain('option http-server-close');
    expect(backend('api')).toContain('http-reuse always');
    expect(backend('api')).toContain(`timeout queue ${SERVER_TIMEOUT_S}s`);
    expect(backend('api')).toContain(`default-server check inter 1s fall 2 rise 2 maxconn ${MAX_CONNECTIONS_PER_PROCESS}`);
    // Websockets are not bounded per process here (the API bounds them per user and per session),
    // and go to the processes backend api finds healthy.
    expect(backend('websockets').filter((l) => /maxconn|check/.test(l))).toEqual([]);
  });

  it('brackets IPv6 addresses and refuses an empty backend', () => {
    const v6 = haproxyConfig({ bind: { host: '::1', port: 4000 }, servers: [{ name: 'a', host: '::1', port: 5 }] });
    expect(v6).toContain('bind [::1]:4000');
    expect(v6).toContain('server a [::1]:5');
    expect(() => haproxyConfig({ bind: { host: '127.0.0.1', port: 1 }, servers: [] })).toThrow(/no servers/);
  });

  it('binds several addresses and sets the global maxconn when asked (bench/balancer.ts)', () => {
    const global = (text: string) => directives(text).slice(1, directives(text).indexOf('defaults'));
    expect(global(config)).toEqual([]);
    const tier = haproxyConfig({
      bind: [
        { host: '127.0.0.2', port: 4000 },
        { host: '127.0.0.3', port: 4000 },
      ],
      servers: [{ name: 'a', host: '127.0.0.1', port: 5 }],
      maxconn: 9000,
    });
    expect(global(tier)).toEqual(['maxconn 9000']);
    expect(directives(tier).filter((l) => l.startsWith('bind '))).toEqual(['bind 127.0.0.2:4000', 'bind 127.0.0.3:4000']);
  });

  it("deploy/haproxy.cfg (docker compose) has the generated config's defaults and backend settings", () => {
    const deploy = directives(deployConfig);
    const section = (lines: string[], name: string) => {
      const start = lines.indexOf(name);
      const end = lines.findIndex((l, i) => i > start && /^(global|defaults|frontend|backend|resolvers)\b/.test(l));
      return lines.slice(start + 1, end === -1 ? undefined : end);
    };
    const generated = directives(config);
    expect(section(deploy, 'defaults')).toEqual(section(generated, 'defaults'));
    for (const line of ['balance leastconn', 'option httpchk GET /readyz', 'http-check expect status 200', 'use_backend websockets if { hdr(upgrade) -i websocket }', 'http-reuse always', `timeout queue ${SERVER_TIMEOUT_S}s`]) {
      expect(deploy).toContain(line);
      expect(generated).toContain(line);
    }
  });

  const haproxy = findHaproxy();
  it.skipIf(!haproxy)('HAProxy accepts both configs (haproxy -c)', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'haproxy-cfg-'));
    try {
      for (const [name, text] of [
        ['generated.cfg', config],
        ['deploy.cfg', deployConfig],
      ] as const) {
        const file = path.join(dir, name);
        writeFileSync(file, text);
        // Throws (with HAProxy's message) on an invalid config; -q: nothing printed when valid.
        execFileSync(haproxy!, ['-c', '-q', '-f', file], { stdio: 'pipe' });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
