/**
 * The catalog in PostgreSQL, shared by any number of replicas (docs/service.md, "Replicas on one PostgreSQL").
 *
 * deltarec_changes holds every change with its version; one statement takes the next version from the single row
 * of deltarec_catalog_head (its row lock serializes writers, so versions commit in order and a reader never sees
 * version v+1 before v) and inserts the change; a trigger then NOTIFYs the version (a few bytes, far below the
 * 8,000-byte payload limit). A write is acknowledged only after that statement committed and this replica applied
 * every change up to it. Every replica LISTENs; a notification, its own write, its start and every reconnect make
 * it fetch the changes after the last version it applied, so a notification lost while a connection was down
 * costs nothing. The schema is created and migrated here, under an advisory lock, with its version recorded.
 */
import pg from 'pg';
import {
  CatalogUnavailableError,
  ChangeRefusedError,
  floatsFromBytes,
  type ApplyChange,
  type ApplyResult,
  type CatalogChange,
  type CatalogStore,
  type CatalogStoreStatus,
  type NewChange,
} from './catalog-store.js';

const CHANNEL = 'deltarec_catalog';
/** pg_advisory_xact_lock key of the schema migrations ('deltarec' in ASCII). */
const MIGRATION_LOCK = 0x64656c746172;
const PAGE = 1000;
/** How long a write waits for its own change to be applied here after it committed. */
const APPLY_TIMEOUT_MS = 10_000;

/** Schema migrations, in order; deltarec_schema.version counts those applied. Never edit one that shipped. */
const MIGRATIONS = [
  `CREATE TABLE deltarec_catalog_head (one boolean PRIMARY KEY DEFAULT true CHECK (one), version bigint NOT NULL);
   INSERT INTO deltarec_catalog_head (version) VALUES (0);
   CREATE TABLE deltarec_changes (
     version bigint PRIMARY KEY,
     op text NOT NULL CHECK (op IN ('put', 'delete')),
     item_id text NOT NULL,
     model text NOT NULL,
     fields jsonb,
     raw bytea,
     raw_space text,
     vector bytea,
     created_at timestamptz NOT NULL DEFAULT now(),
     CHECK (op = 'delete' OR vector IS NOT NULL)
   );
   CREATE FUNCTION deltarec_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
   BEGIN
     PERFORM pg_notify('${CHANNEL}', NEW.version::text);
     RETURN NULL;
   END $$;
   CREATE TRIGGER deltarec_changes_notify AFTER INSERT ON deltarec_changes
     FOR EACH ROW EXECUTE FUNCTION deltarec_notify_change();`,
  // Compaction (PostgresCatalogStore.compact): how far it went, in a row of its own (writers lock the head's).
  `CREATE TABLE deltarec_compacted (one boolean PRIMARY KEY DEFAULT true CHECK (one), through bigint NOT NULL);
   INSERT INTO deltarec_compacted (through) VALUES (0);
   CREATE INDEX deltarec_changes_item ON deltarec_changes (item_id, op, version);`,
];

/** pg_advisory_xact_lock key of compactions ('compact' in ASCII). */
const COMPACTION_LOCK = 0x636f6d70616374;

/**
 * One statement, so one snapshot: the page of changes and how far compaction went agree (a compaction deletes its
 * rows and moves deltarec_compacted.through in one transaction).
 */
const FETCH = `SELECT c.version, c.op, c.item_id, c.model, c.fields, c.raw, c.raw_space, c.vector, k.through
  FROM deltarec_changes c CROSS JOIN deltarec_compacted k WHERE c.version > $1 ORDER BY c.version LIMIT $2`;

const INSERT = `WITH head AS (UPDATE deltarec_catalog_head SET version = version + 1 RETURNING version)
  INSERT INTO deltarec_changes (version, op, item_id, model, fields, raw, raw_space, vector)
  SELECT version, $1, $2, $3, $4, $5, $6, $7 FROM head RETURNING version`;

interface ChangeRow {
  version: string; // bigint
  op: 'put' | 'delete';
  item_id: string;
  model: string;
  fields: Record<string, string> | null;
  raw: Buffer | null;
  raw_space: string | null;
  vector: Buffer | null;
  through: string; // bigint: deltarec_compacted.through
}

function toBytes(v: Float32Array | undefined): Buffer | null {
  return v ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : null;
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}

export interface PostgresStoreOptions {
  /** application_name of the connections (visible in pg_stat_activity). */
  applicationName?: string;
  /** Connection timeout, ms (default 3000). */
  connectTimeoutMs?: number;
  /** Where skipped changes are reported (the service: stderr). */
  report?: (message: string) => void;
  /** Compact (compact()) after this many changes applied here (default 1024; 0: never by itself). */
  compactAfter?: number;
  /** Only changes committed longer ago than this are compacted, ms (default 60 s; see compact()). */
  compactMarginMs?: number;
}

export interface CompactionStats {
  compactions: number;
  /** Superseded changes deleted. */
  deleted: number;
}

export class PostgresCatalogStore implements CatalogStore {
  private readonly pool: pg.Pool;
  private listener: pg.Client | null = null;
  private apply: ApplyChange | null = null;
  private applied = 0;
  private pulling: Promise<void> | null = null;
  private pullAgain = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private reconnectAttempt = 0;
  private closed = false;
  private failure: Error | null = null;
  private lastError: string | null = null;
  /** Apply results kept for writes that have committed but not yet read them, by version. */
  private readonly results = new Map<number, ApplyResult>();
  private readonly waiters = new Map<number, (result: ApplyResult) => void>();
  private writing = 0;
  private readonly clientConfig: pg.ClientConfig;
  private skipped = 0;
  private lastSkipped: string | null = null;
  private readonly report: (message: string) => void;
  private readonly compactAfter: number;
  private readonly compactMarginMs: number;
  private compactedAt = 0;
  private compacting: Promise<number> | null = null;
  readonly compaction: CompactionStats = { compactions: 0, deleted: 0 };

  constructor(
    readonly url: string,
    options: PostgresStoreOptions = {},
  ) {
    this.report = options.report ?? (() => {});
    this.compactAfter = options.compactAfter ?? 1024;
    this.compactMarginMs = options.compactMarginMs ?? 60_000;
    this.clientConfig = {
      connectionString: url,
      application_name: options.applicationName ?? 'deltarec',
      connectionTimeoutMillis: options.connectTimeoutMs ?? 3000,
      // Bounded waits: a dead peer (no RST) is found by keep-alive probes, a query never waits more than 15 s.
      keepAlive: true,
      keepAliveInitialDelayMillis: 5000,
      statement_timeout: 10_000,
      query_timeout: 15_000,
    };
    this.pool = new pg.Pool({ ...this.clientConfig, max: 4 });
    // An idle pooled connection that breaks must not crash the process; the next query reconnects.
    this.pool.on('error', (error) => (this.lastError = error.message));
  }

  async start(apply: ApplyChange): Promise<void> {
    this.apply = apply;
    try {
      await this.migrate();
      await this.connectListener(); // LISTEN before the first fetch, so nothing committed meanwhile is missed
      await this.pull();
    } catch (error) {
      await this.close();
      throw new Error(`catalog database ${redactUrl(this.url)}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  private async migrate(): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await client.query('CREATE TABLE IF NOT EXISTS deltarec_schema (version integer NOT NULL)');
      const { rows } = await client.query<{ version: number }>('SELECT version FROM deltarec_schema');
      if (rows.length === 0) await client.query('INSERT INTO deltarec_schema (version) VALUES (0)');
      let version = rows[0]?.version ?? 0;
      if (version > MIGRATIONS.length) {
        throw new Error(
          `its catalog schema is version ${version}, newer than this deltarec knows (${MIGRATIONS.length}); upgrade deltarec`,
        );
      }
      for (; version < MIGRATIONS.length; version++) await client.query(MIGRATIONS[version]);
      await client.query('UPDATE deltarec_schema SET version = $1', [version]);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }

  private async connectListener(): Promise<void> {
    const client = new pg.Client(this.clientConfig);
    const lost = (error: Error) => {
      if (this.listener !== client) return;
      this.listener = null;
      this.lastError = `connection lost: ${error.message}`;
      client.end().catch(() => {});
      this.scheduleReconnect();
    };
    client.on('error', lost);
    client.on('end', () => lost(new Error('the server closed the connection')));
    client.on('notification', () => this.pullSoon());
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (error) {
      client.removeAllListeners('end');
      await client.end().catch(() => {});
      throw error;
    }
    if (this.closed) {
      await client.end();
      return;
    }
    this.listener = client;
    this.lastError = null;
    this.reconnectAttempt = 0;
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    const delay = Math.min(2000, 50 * 2 ** this.reconnectAttempt++);
    setTimeout(() => {
      if (this.closed) return;
      this.connectListener().then(
        () => this.pullSoon(), // notifications sent while the connection was down are lost: catch up by version
        (error: Error) => {
          this.lastError = `reconnecting: ${error.message}`;
          this.scheduleReconnect();
        },
      );
    }, delay).unref();
  }

  /** Fetches and applies the changes after the last applied version; concurrent calls share one fetch loop. */
  private pull(): Promise<void> {
    if (this.pulling) {
      this.pullAgain = true;
      return this.pulling;
    }
    this.pulling = (async () => {
      try {
        do {
          this.pullAgain = false;
          await this.fetchAndApply();
        } while (this.pullAgain && !this.closed);
      } finally {
        this.pulling = null;
      }
    })();
    return this.pulling;
  }

  /** pull() for callers that do not wait: on failure, retries shortly (the data is in the database). */
  private pullSoon(): void {
    this.pull().catch((error: Error) => {
      this.lastError = error.message;
      if (this.closed || this.retryTimer || this.failure) return;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.pullSoon();
      }, 200);
      this.retryTimer.unref();
    });
  }

  private async fetchAndApply(): Promise<void> {
    for (;;) {
      if (this.failure) throw this.failure;
      const { rows } = await this.pool.query<ChangeRow>(FETCH, [this.applied, PAGE]);
      // One page is applied synchronously: no request runs between two of its changes.
      for (const row of rows) {
        const version = Number(row.version);
        // Versions up to deltarec_compacted.through may be missing: superseded changes that compaction deleted.
        if (version !== this.applied + 1 && version - 1 > Number(row.through)) {
          this.failure = new Error(
            `catalog version ${this.applied + 1} is missing (next is ${version}): deltarec_changes was edited outside deltarec; this replica stops following`,
          );
          throw this.failure;
        }
        const change: CatalogChange = { version, op: row.op, id: row.item_id, model: row.model };
        if (row.vector) change.vector = floatsFromBytes(row.vector);
        if (row.raw) change.raw = floatsFromBytes(row.raw);
        if (row.raw_space) change.rawSpace = row.raw_space;
        if (row.fields) change.fields = row.fields;
        let result: ApplyResult;
        try {
          result = this.apply!(change);
        } catch (error) {
          if (!(error instanceof ChangeRefusedError)) {
            this.failure = new Error(`catalog version ${version}: ${(error as Error).message}`);
            throw this.failure;
          }
          // A change of another model that this one cannot take (its item stays unknown here, or as it was): the
          // other replicas have applied it, so stopping would only leave this one behind on every later change.
          this.skipped++;
          this.lastSkipped = `catalog version ${version} skipped: ${error.message}`;
          this.report(this.lastSkipped);
          result = { existed: false };
        }
        this.applied = version;
        const waiter = this.waiters.get(version);
        if (waiter) {
          this.waiters.delete(version);
          waiter(result);
        } else if (this.writing > 0) this.results.set(version, result);
      }
      if (this.compactAfter > 0 && this.applied - this.compactedAt >= this.compactAfter) {
        this.compactedAt = this.applied;
        this.compact().catch((error: Error) => (this.lastError = `compaction: ${error.message}`));
      }
      if (rows.length < PAGE) return;
    }
  }

  /**
   * Deletes superseded changes: of each item, every put but its last and every delete but its last (the rule of
   * the file log's compaction, catalog-log.ts compactRecords, which rebuilds the same state), among the changes
   * committed more than compactMarginMs ago, and records the last version it considered in
   * deltarec_compacted.through, below which a replica catching up by version accepts missing versions. A replica
   * that had applied any prefix of the changes reaches the same state from the rest (per item, the last put and
   * delete decide), and the margin is far beyond the 10 s a writer waits to apply its own version, so no write
   * waits for a deleted one. Replicas run it by themselves every compactAfter changes (serialized by an advisory
   * lock). Returns the number of changes deleted.
   */
  compact(): Promise<number> {
    this.compacting ??= this.compactOnce().finally(() => (this.compacting = null));
    return this.compacting;
  }

  private async compactOnce(): Promise<number> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [COMPACTION_LOCK]);
      const { rows } = await client.query<{ through: string | null }>(
        `SELECT max(version) AS through FROM deltarec_changes WHERE created_at <= now() - $1 * interval '1 millisecond'`,
        [this.compactMarginMs],
      );
      const through = Number(rows[0].through ?? 0);
      let deleted = 0;
      if (through > 0) {
        // Only the changes after the previous compaction can supersede a change it kept (one it did not see was
        // either after its range or superseded by one after it), so the work is that of the new changes.
        const result = await client.query(
          `DELETE FROM deltarec_changes c
             USING (SELECT item_id, op, max(version) AS last FROM deltarec_changes
                    WHERE version > (SELECT through FROM deltarec_compacted) GROUP BY item_id, op) n
           WHERE c.item_id = n.item_id AND c.op = n.op AND c.version < n.last AND c.version <= $1`,
          [through],
        );
        deleted = result.rowCount ?? 0;
        await client.query('UPDATE deltarec_compacted SET through = greatest(through, $1)', [through]);
      }
      await client.query('COMMIT');
      this.compaction.compactions++;
      this.compaction.deleted += deleted;
      return deleted;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }

  async write(change: NewChange): Promise<ApplyResult> {
    if (this.failure) {
      throw new CatalogUnavailableError(
        `this replica stopped following the catalog: ${this.failure.message}`,
      );
    }
    this.writing++;
    let version: number;
    try {
      try {
        const { rows } = await this.pool.query<{ version: string }>(INSERT, [
          change.op,
          change.id,
          change.model,
          change.fields ?? null,
          toBytes(change.raw),
          change.rawSpace ?? null,
          toBytes(change.vector),
        ]);
        version = Number(rows[0].version);
      } catch (error) {
        this.lastError = (error as Error).message;
        throw new CatalogUnavailableError(
          `catalog database unavailable (${(error as Error).message}); the change was not recorded, retry later`,
        );
      }
      this.lastError = null;
      const kept = this.results.get(version);
      if (kept) {
        this.results.delete(version);
        return kept;
      }
      this.pullSoon();
      return await new Promise<ApplyResult>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.waiters.delete(version);
          reject(
            new CatalogUnavailableError(
              `the change was recorded as catalog version ${version} but this replica could not apply it within ${APPLY_TIMEOUT_MS / 1000} s (${this.lastError ?? 'database slow'})`,
            ),
          );
        }, APPLY_TIMEOUT_MS);
        this.waiters.set(version, (result) => {
          clearTimeout(timer);
          resolve(result);
        });
      });
    } finally {
      if (--this.writing === 0) this.results.clear();
    }
  }

  status(): CatalogStoreStatus {
    const status: CatalogStoreStatus = {
      kind: 'postgres',
      version: this.applied,
      writable: this.listener !== null && !this.failure,
    };
    const message = this.failure?.message ?? (this.listener ? null : this.lastError);
    if (message) status.message = message;
    status.skipped = this.skipped;
    if (this.lastSkipped) status.last_skipped = this.lastSkipped;
    return status;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const listener = this.listener;
    this.listener = null;
    await listener?.end().catch(() => {});
    await this.pulling?.catch(() => {});
    await this.compacting?.catch(() => {});
    await this.pool.end().catch(() => {});
  }
}
