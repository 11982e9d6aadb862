// docker-compose.yml as `docker compose` reads it, without Docker: compose-go, the loader of `docker
// compose` (built once with Go by scripts/compose-check.ts), accepts the file, and the project it
// loads has the shape the README describes. No container is started: images, the build and the
// replica set's start-up are not tested here.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureComposeCheck, loadComposeFile, type ComposeProject, type ComposeService } from '../../scripts/compose-check.js';
import { REPO } from '../../scripts/database/paths.js';
import { API_PROCESS_ENV } from '../../scripts/cluster/haproxy.js';

let loaded: Promise<ComposeProject> | undefined;
const load = () => (loaded ??= loadComposeFile(path.join(REPO, 'docker-compose.yml')));
const service = async (name: string): Promise<ComposeService> => {
  const s = (await load()).services.find((x) => x.name === name);
  if (!s) throw new Error(`docker-compose.yml has no service ${name}`);
  return s;
};
const replSet = async () => {
  const command = (await service('mongo')).command;
  const at = command.indexOf('--replSet');
  return at === -1 ? undefined : command[at + 1];
};

describe('docker-compose.yml (compose-go)', () => {
  beforeAll(() => ensureComposeCheck().then(() => undefined)); // the first time: built with Go (hookTimeout)

  it('loads: schema, types, interpolation and references between services', async () => {
    expect((await load()).services.map((s) => s.name)).toEqual(['api', 'haproxy', 'mongo']);
  });

  it('starts mongo as a replica set that initiates itself in its health check', async () => {
    const mongo = await service('mongo');
    expect(await replSet()).toBe('rs0');
    expect(mongo.image).toMatch(/^mongo:/);
    expect(mongo.healthcheck.join(' ')).toContain(`rs.initiate({ _id: '${await replSet()}'`);
    expect(mongo.volumes).toContainEqual(expect.objectContaining({ type: 'volume', source: 'mongo-data', target: '/data/db' }));
  });

  it('runs 3 API replicas, built from ./Dockerfile, once mongo is healthy, on its replica set, with no published port', async () => {
    const api = await service('api');
    expect(api.replicas).toBe(3);
    expect(api.depends_on).toEqual({ mongo: { condition: 'service_healthy', required: true } });
    expect(api.build?.context).toBe(REPO);
    expect(existsSync(path.join(REPO, api.build?.dockerfile ?? 'Dockerfile'))).toBe(true);
    const uri = new URL(api.environment.MONGODB_URI ?? '');
    expect(uri.hostname).toBe('mongo');
    expect(uri.searchParams.get('replicaSet')).toBe(await replSet());
    expect(api.environment.TRUST_PROXY).toBe('uniquelocal');
    // HAProxy reuses its connections to the replicas (deploy/haproxy.cfg), as npm run start:cluster's do.
    expect(api.environment).toMatchObject(API_PROCESS_ENV);
    expect(api.ports).toEqual([]);
  });

  it('publishes HAProxy on port 4000 with deploy/haproxy.cfg mounted, after the API', async () => {
    const haproxy = await service('haproxy');
    expect(haproxy.ports).toEqual([{ target: 4000, published: '4000', protocol: 'tcp' }]);
    const cfg = path.join(REPO, 'deploy', 'haproxy.cfg');
    expect(haproxy.volumes).toContainEqual({ type: 'bind', source: cfg, target: '/usr/local/etc/haproxy/haproxy.cfg', read_only: true });
    expect(existsSync(cfg)).toBe(true);
    expect(Object.keys(haproxy.depends_on)).toEqual(['api']);
  });

  it("rejects a file compose-go refuses, with the loader's message", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'compose-check-'));
    try {
      const file = path.join(dir, 'docker-compose.yml');
      const rejects = (yaml: string) => {
        writeFileSync(file, yaml);
        return expect(loadComposeFile(file)).rejects;
      };
      await rejects('services:\n  api:\n    image: x\n    depend_on: [db]\n').toThrow(/validating .*: services\.api\.depend_on false schema/);
      await rejects('services:\n  api:\n    image: x\n    ports: 4000\n').toThrow(/services\.api\.ports must be a array/);
      await rejects('services:\n  api:\n    image: x\n    depends_on: [db]\n').toThrow(/service "api" depends on undefined service "db"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
