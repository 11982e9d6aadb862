import type { Express, Response } from 'express';
import type { DatabaseHealth } from '../store/databaseHealth.js';

/**
 * Liveness and readiness, for orchestrators and load balancers that look at status codes:
 * - GET /livez: 200 while the process runs and serves HTTP (restart it when this fails);
 * - GET /readyz: 200 while the database answers, 503 while it is out of reach or refuses writes
 *   for lack of space (send no traffic meanwhile; the process recovers by itself when the database is back);
 * - GET /healthz: the same as /readyz, for balancers already configured with it.
 * Bodies are JSON and name no address.
 */
export function mountHealth(app: Express, health: DatabaseHealth): void {
  const noStore = (res: Response) => res.set('Cache-Control', 'no-store');
  app.get('/livez', (_req, res) => {
    noStore(res).json({ ok: true });
  });
  const ready = (_req: unknown, res: Response) => {
    const status = health.status();
    noStore(res).status(status.ok ? 200 : 503).json(status);
  };
  app.get('/readyz', ready);
  app.get('/healthz', ready);
}
