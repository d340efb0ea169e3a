//! Versioned migrations for PostgreSQL. They run at open under a session-level advisory
//! lock, so several nodes starting at once apply each migration exactly once (the others
//! wait, then find it recorded). Each migration runs in its own transaction.
//!
//! Times are unix seconds (BIGINT), as in the SQLite schema, so both backends give the
//! same answers to the same queries.

use tokio_postgres::Client;

use crate::StoreError;

/// `pg_advisory_lock` key of the migrations ("fleetca" in ASCII).
const MIGRATION_LOCK: i64 = 0x0066_6c65_6574_6361;

pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "
    CREATE TABLE devices (
        serial_number TEXT PRIMARY KEY,
        status        TEXT NOT NULL,
        created_at    BIGINT NOT NULL,
        updated_at    BIGINT NOT NULL,
        station       TEXT,
        model         TEXT,
        batch         TEXT
    );
    CREATE TABLE certificates (
        serial            TEXT PRIMARY KEY,
        device_serial     TEXT NOT NULL REFERENCES devices(serial_number),
        issuer            TEXT NOT NULL,
        profile           TEXT NOT NULL,
        kind              TEXT NOT NULL,
        not_before        BIGINT NOT NULL,
        not_after         BIGINT NOT NULL,
        spki_sha256       TEXT NOT NULL,
        der               BYTEA NOT NULL,
        status            TEXT NOT NULL,
        replaces          TEXT REFERENCES certificates(serial),
        issued_at         BIGINT NOT NULL,
        revoked_at        BIGINT,
        revocation_reason TEXT
    );
    -- A device's certificates by kind and state (standing, duplicate birth check, counts).
    CREATE INDEX certificates_by_device_kind ON certificates(device_serial, kind, status);
    -- Expiry scans over millions of rows: a range on not_after within a status...
    CREATE INDEX certificates_by_expiry ON certificates(status, not_after);
    -- ...and across statuses (listing by expiry).
    CREATE INDEX certificates_by_not_after ON certificates(not_after);
    -- Finding a certificate's successor.
    CREATE INDEX certificates_by_replaces ON certificates(replaces) WHERE replaces IS NOT NULL;
    -- CRL building: the revoked and held certificates of one CA.
    CREATE INDEX certificates_not_valid ON certificates(issuer, status) WHERE status <> 'valid';
    CREATE TABLE accounts (
        name           TEXT PRIMARY KEY,
        password_hash  TEXT NOT NULL,
        label          TEXT,
        serial_pattern TEXT,
        enabled        BOOLEAN NOT NULL DEFAULT TRUE,
        created_at     BIGINT NOT NULL
    );
    -- Monotonic CRL numbers per CA; `der_number` is the number of the stored `der`.
    CREATE TABLE crls (
        issuer      TEXT PRIMARY KEY,
        number      BIGINT NOT NULL,
        this_update BIGINT NOT NULL,
        next_update BIGINT NOT NULL,
        der         BYTEA,
        der_number  BIGINT
    );
    CREATE TABLE status_revision (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        revision BIGINT NOT NULL
    );
    INSERT INTO status_revision (id, revision) VALUES (1, 0);
    CREATE TABLE stations (
        name              TEXT PRIMARY KEY,
        serial_pattern    TEXT NOT NULL,
        range_from        TEXT,
        range_to          TEXT,
        quota             BIGINT,
        issued            BIGINT NOT NULL DEFAULT 0,
        valid_days        BIGINT NOT NULL,
        allow_reissue     BOOLEAN NOT NULL DEFAULT FALSE,
        status            TEXT NOT NULL,
        credential_serial TEXT NOT NULL,
        created_at        BIGINT NOT NULL,
        updated_at        BIGINT NOT NULL
    );
    -- The audit trail: append-only, each row chained to the previous one by SHA-256.
    -- Appenders serialise on an advisory lock, so ids follow the chain order.
    CREATE TABLE audit (
        id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at        BIGINT NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        subject   TEXT NOT NULL,
        outcome   TEXT NOT NULL,
        detail    TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    );
    CREATE INDEX audit_by_actor ON audit(actor, id);
    CREATE INDEX audit_refusals ON audit(at, actor) WHERE outcome = 'refused';
    CREATE TABLE monitor_scans (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at BIGINT NOT NULL
    );
    CREATE TABLE escalations (
        id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind               TEXT NOT NULL,
        device_serial      TEXT NOT NULL,
        certificate_serial TEXT NOT NULL,
        tier               TEXT NOT NULL,
        not_after          BIGINT,
        opened_at          BIGINT NOT NULL,
        notified_at        BIGINT,
        notified_scan      BIGINT REFERENCES monitor_scans(id),
        resolved_at        BIGINT,
        resolution         TEXT
    );
    CREATE UNIQUE INDEX escalations_open
        ON escalations(kind, device_serial, certificate_serial) WHERE resolved_at IS NULL;
    CREATE TABLE outbox (
        id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        scan_id         BIGINT NOT NULL REFERENCES monitor_scans(id),
        channel         TEXT NOT NULL,
        tier            TEXT NOT NULL,
        event           TEXT NOT NULL,
        payload         TEXT NOT NULL,
        created_at      BIGINT NOT NULL,
        state           TEXT NOT NULL,
        attempts        BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        lease_until     BIGINT,
        last_error      TEXT,
        delivered_at    BIGINT
    );
    CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
    CREATE INDEX outbox_by_scan ON outbox(scan_id, tier);
    -- Leases so one node runs each background job.
    CREATE TABLE leases (
        name   TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until  BIGINT NOT NULL
    );
    CREATE INDEX devices_by_status ON devices(status, created_at);
    ",
    ),
    (
        2,
        "
    -- Every RA decision with the result of each rule (JSON), newest last.
    CREATE TABLE decisions (
        id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at                 BIGINT NOT NULL,
        device_serial      TEXT,
        client             TEXT NOT NULL,
        operation          TEXT NOT NULL,
        label              TEXT,
        profile            TEXT NOT NULL,
        outcome            TEXT NOT NULL,
        rule               TEXT,
        reason             TEXT,
        checks             TEXT NOT NULL,
        certificate_serial TEXT,
        approval_id        BIGINT
    );
    CREATE INDEX decisions_by_device ON decisions(device_serial, id);
    -- Manual approvals: one open (pending or approved) request per request key.
    CREATE TABLE approvals (
        id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        request_key        TEXT NOT NULL,
        device_serial      TEXT NOT NULL,
        label              TEXT,
        profile            TEXT NOT NULL,
        operation          TEXT NOT NULL,
        client             TEXT NOT NULL,
        reason             TEXT NOT NULL,
        created_at         BIGINT NOT NULL,
        state              TEXT NOT NULL,
        decided_by         TEXT,
        decided_at         BIGINT,
        decision_reason    TEXT,
        claimed_until      BIGINT,
        certificate_serial TEXT,
        polls              BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX approvals_by_key ON approvals(request_key, id);
    CREATE UNIQUE INDEX approvals_open ON approvals(request_key)
        WHERE state IN ('pending', 'approved');
    CREATE INDEX approvals_by_state ON approvals(state, id);
    -- Per-device rate limits count recent issuances.
    CREATE INDEX certificates_by_device_issued ON certificates(device_serial, issued_at);
    -- An operator's override of the re-enrollment window.
    ALTER TABLE devices ADD COLUMN reenroll_forced_until BIGINT;
    ",
    ),
    (
        3,
        "
    -- Enrollment accounts (issue 13): an account without a serial pattern needs
    -- `--any-serial`, and enrolls only devices new to the inventory unless added with
    -- `--allow-known-devices`. Accounts stored without a pattern keep naming any serial,
    -- but like every account now enroll only new devices, each once.
    ALTER TABLE accounts ADD COLUMN any_serial BOOLEAN NOT NULL DEFAULT FALSE;
    ALTER TABLE accounts ADD COLUMN known_devices BOOLEAN NOT NULL DEFAULT FALSE;
    UPDATE accounts SET any_serial = TRUE WHERE serial_pattern IS NULL;
    -- A device is bound to the profile of its first operational certificate and to the CA
    -- of its birth certificate; known devices get both from their oldest certificates.
    ALTER TABLE devices ADD COLUMN profile TEXT;
    ALTER TABLE devices ADD COLUMN birth_issuer TEXT;
    UPDATE devices SET profile = (SELECT c.profile FROM certificates c
        WHERE c.device_serial = devices.serial_number AND c.kind = 'operational'
        ORDER BY c.issued_at, c.serial LIMIT 1);
    UPDATE devices SET birth_issuer = (SELECT c.issuer FROM certificates c
        WHERE c.device_serial = devices.serial_number AND c.kind = 'birth'
        ORDER BY c.issued_at, c.serial LIMIT 1);
    -- Imported manufacturer CAs' serial scopes (`trust add-manufacturer --serial-pattern`).
    CREATE TABLE manufacturers (
        name           TEXT PRIMARY KEY,
        serial_pattern TEXT,
        added_at       BIGINT NOT NULL
    );
    ",
    ),
    (
        4,
        "
    -- The admin API (issue 16). API tokens: only the SHA-256 of the secret is kept; a
    -- revoked token stays, so its name is never used again.
    CREATE TABLE api_tokens (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL UNIQUE,
        created_at    BIGINT NOT NULL,
        expires_at    BIGINT,
        created_by    TEXT NOT NULL,
        revoked_at    BIGINT,
        last_used_at  BIGINT
    );
    -- Operator users (argon2id PHC strings) and their login sessions.
    CREATE TABLE operator_users (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at    BIGINT NOT NULL,
        enabled       BOOLEAN NOT NULL DEFAULT TRUE,
        last_login_at BIGINT
    );
    CREATE TABLE operator_sessions (
        secret_sha256 TEXT PRIMARY KEY,
        user_name     TEXT NOT NULL REFERENCES operator_users(name),
        created_at    BIGINT NOT NULL,
        expires_at    BIGINT NOT NULL,
        last_seen_at  BIGINT NOT NULL
    );
    CREATE INDEX operator_sessions_by_user ON operator_sessions(user_name);
    -- Certificate listings are ordered by (not_after, serial) and continue after the last
    -- row of a page: the serial in the index makes that one range scan.
    DROP INDEX certificates_by_expiry;
    CREATE INDEX certificates_by_expiry ON certificates(status, not_after, serial);
    DROP INDEX certificates_by_not_after;
    CREATE INDEX certificates_by_not_after ON certificates(not_after, serial);
    -- Filtered listings, each in its keyset order.
    CREATE INDEX approvals_by_device ON approvals(device_serial, id);
    CREATE INDEX escalations_by_device ON escalations(device_serial, id);
    CREATE INDEX audit_by_action ON audit(action, id);
    CREATE INDEX audit_by_subject ON audit(subject, id);
    -- Fleet statistics without reading a million rows: certificates counted by kind,
    -- profile, status and UTC day of not_after, devices by status, decisions by UTC day
    -- and outcome. Writers never update a shared counter row (every enrollment on every
    -- node would queue on it): triggers append +1/-1 rows to the *_deltas tables (inserts
    -- never wait for each other), and readers (the statistics, the inventory gauges) first
    -- fold the deltas into the counts under an advisory lock, then read the counts.
    -- Writers of older nodes wait from here to the commit: no row is written between the
    -- initial counts and the triggers (it would be counted by neither).
    LOCK TABLE certificates, devices, decisions IN SHARE ROW EXCLUSIVE MODE;
    CREATE TABLE certificate_counts (
        kind       TEXT NOT NULL,
        profile    TEXT NOT NULL,
        status     TEXT NOT NULL,
        expiry_day BIGINT NOT NULL,
        n          BIGINT NOT NULL,
        PRIMARY KEY (kind, profile, status, expiry_day)
    );
    CREATE TABLE certificate_count_deltas (
        kind       TEXT NOT NULL,
        profile    TEXT NOT NULL,
        status     TEXT NOT NULL,
        expiry_day BIGINT NOT NULL,
        n          BIGINT NOT NULL
    );
    INSERT INTO certificate_counts (kind, profile, status, expiry_day, n)
        SELECT kind, profile, status,
               (not_after - ((not_after % 86400) + 86400) % 86400) / 86400, COUNT(*)
        FROM certificates GROUP BY 1, 2, 3, 4;
    CREATE FUNCTION certificate_count_delta() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            INSERT INTO certificate_count_deltas (kind, profile, status, expiry_day, n)
            VALUES (OLD.kind, OLD.profile, OLD.status,
                    (OLD.not_after - ((OLD.not_after % 86400) + 86400) % 86400) / 86400, -1);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO certificate_count_deltas (kind, profile, status, expiry_day, n)
            VALUES (NEW.kind, NEW.profile, NEW.status,
                    (NEW.not_after - ((NEW.not_after % 86400) + 86400) % 86400) / 86400, 1);
        END IF;
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER certificate_counts_insert AFTER INSERT ON certificates
        FOR EACH ROW EXECUTE FUNCTION certificate_count_delta();
    CREATE TRIGGER certificate_counts_update
        AFTER UPDATE OF kind, profile, status, not_after ON certificates
        FOR EACH ROW WHEN (OLD.kind IS DISTINCT FROM NEW.kind
            OR OLD.profile IS DISTINCT FROM NEW.profile
            OR OLD.status IS DISTINCT FROM NEW.status
            OR OLD.not_after IS DISTINCT FROM NEW.not_after)
        EXECUTE FUNCTION certificate_count_delta();
    CREATE TRIGGER certificate_counts_delete AFTER DELETE ON certificates
        FOR EACH ROW EXECUTE FUNCTION certificate_count_delta();
    CREATE TABLE device_counts (
        status TEXT PRIMARY KEY,
        n      BIGINT NOT NULL
    );
    CREATE TABLE device_count_deltas (
        status TEXT NOT NULL,
        n      BIGINT NOT NULL
    );
    INSERT INTO device_counts (status, n) SELECT status, COUNT(*) FROM devices GROUP BY 1;
    CREATE FUNCTION device_count_delta() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            INSERT INTO device_count_deltas (status, n) VALUES (OLD.status, -1);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO device_count_deltas (status, n) VALUES (NEW.status, 1);
        END IF;
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER device_counts_insert AFTER INSERT ON devices
        FOR EACH ROW EXECUTE FUNCTION device_count_delta();
    CREATE TRIGGER device_counts_update AFTER UPDATE OF status ON devices
        FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
        EXECUTE FUNCTION device_count_delta();
    CREATE TRIGGER device_counts_delete AFTER DELETE ON devices
        FOR EACH ROW EXECUTE FUNCTION device_count_delta();
    CREATE TABLE decision_counts (
        day     BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        n       BIGINT NOT NULL,
        PRIMARY KEY (day, outcome)
    );
    CREATE TABLE decision_count_deltas (
        day     BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        n       BIGINT NOT NULL
    );
    INSERT INTO decision_counts (day, outcome, n)
        SELECT (at - ((at % 86400) + 86400) % 86400) / 86400, outcome, COUNT(*)
        FROM decisions GROUP BY 1, 2;
    CREATE FUNCTION decision_count_delta() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO decision_count_deltas (day, outcome, n)
        VALUES ((NEW.at - ((NEW.at % 86400) + 86400) % 86400) / 86400, NEW.outcome, 1);
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER decision_counts_insert AFTER INSERT ON decisions
        FOR EACH ROW EXECUTE FUNCTION decision_count_delta();
    -- Folded deltas are deleted rows: vacuum them soon, whatever the table's size, so
    -- the next fold's scan stays short.
    ALTER TABLE certificate_count_deltas SET (autovacuum_vacuum_scale_factor = 0,
        autovacuum_vacuum_threshold = 1000);
    ALTER TABLE device_count_deltas SET (autovacuum_vacuum_scale_factor = 0,
        autovacuum_vacuum_threshold = 1000);
    ALTER TABLE decision_count_deltas SET (autovacuum_vacuum_scale_factor = 0,
        autovacuum_vacuum_threshold = 1000);
    ",
    ),
    (
        5,
        "
    -- Every key and certificate each CA has had (issue 18): a rollover records the next
    -- generation; every node issues with the newest one whose activation time has come.
    CREATE TABLE ca_generations (
        ca              TEXT NOT NULL,
        generation      INTEGER NOT NULL,
        certificate     BYTEA NOT NULL,
        key_ref         TEXT NOT NULL,
        not_before      BIGINT NOT NULL,
        not_after       BIGINT NOT NULL,
        activate_at     BIGINT NOT NULL,
        created_at      BIGINT NOT NULL,
        root_generation INTEGER,
        link_new_with_old BYTEA,
        link_old_with_new BYTEA,
        PRIMARY KEY (ca, generation)
    );
    ",
    ),
    (
        6,
        "
    -- CMP (issue 19): one-time shared secrets (only a digest) and transactions in flight.
    CREATE TABLE cmp_secrets (
        reference     TEXT PRIMARY KEY,
        device_serial TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL,
        created_at    BIGINT NOT NULL,
        expires_at    BIGINT NOT NULL,
        created_by    TEXT NOT NULL,
        consumed_at   BIGINT,
        consumed_by   BYTEA
    );
    CREATE TABLE cmp_transactions (
        transaction_id     BYTEA PRIMARY KEY,
        state              TEXT NOT NULL,
        server_nonce       BYTEA NOT NULL,
        protection         TEXT NOT NULL,
        device_serial      TEXT NOT NULL,
        label              TEXT,
        request_kind       TEXT NOT NULL,
        request_der        BYTEA,
        certificate_serial TEXT,
        certificate_der    BYTEA,
        confirm_by         BIGINT,
        created_at         BIGINT NOT NULL,
        updated_at         BIGINT NOT NULL
    );
    CREATE INDEX cmp_transactions_unconfirmed ON cmp_transactions (confirm_by)
        WHERE state = 'unconfirmed';
    ",
    ),
    (
        7,
        "
    -- SCEP (issue 20): one-time challenge passwords (hashed) bound to a device serial,
    -- and transactions (the request key, the CSR a pending request is polled with).
    CREATE TABLE scep_challenges (
        secret_sha256 TEXT PRIMARY KEY,
        device_serial TEXT NOT NULL,
        created_at    BIGINT NOT NULL,
        expires_at    BIGINT NOT NULL,
        created_by    TEXT NOT NULL,
        used_at       BIGINT
    );
    CREATE TABLE scep_transactions (
        transaction_id TEXT PRIMARY KEY,
        key_sha256     TEXT NOT NULL,
        label          TEXT,
        secret_device  TEXT,
        csr            BYTEA NOT NULL,
        created_at     BIGINT NOT NULL,
        certificate_serial TEXT
    );
    ",
    ),
    (
        8,
        "
    -- The CRL query (issue 21) reads every unexpired revoked certificate of an issuer in
    -- serial order: an index-only scan in that order instead of heap fetches and a sort.
    CREATE INDEX certificates_revoked_by_serial
        ON certificates (issuer, serial) INCLUDE (not_after, revoked_at, revocation_reason, status)
        WHERE status <> 'valid';
    ",
    ),
    (
        9,
        "
    -- A CRL's recording (issue 21): PostgreSQL compresses a large value before storing it
    -- out of line, by default with pglz, and decompresses it at every read (other nodes
    -- installing it, CMP and SCEP CRL requests). Recording a 43 MB CRL (1,000,000 entries)
    -- took 0.39-0.43 s with pglz and takes 0.23-0.29 s with lz4, stored 9% larger.
    -- Storing it uncompressed was no faster (more to write). A server before PostgreSQL
    -- 14, or built without lz4, keeps pglz.
    DO $$
    BEGIN
        IF current_setting('server_version_num')::INT >= 140000 THEN
            EXECUTE 'ALTER TABLE crls ALTER COLUMN der SET COMPRESSION lz4';
        END IF;
    EXCEPTION WHEN feature_not_supported THEN
        NULL;
    END
    $$;
    ",
    ),
];

/// The newest schema version this build knows.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map(|(v, _)| *v).unwrap_or(0)
}

/// Applies pending migrations under the migration lock.
pub(crate) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = apply(client).await;
    // Released explicitly; it would also go with the session.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result?;
    unlocked?;
    Ok(())
}

async fn apply(client: &mut Client) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
    for (version, sql) in MIGRATIONS {
        let tx = client.transaction().await?;
        let done: bool = tx
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE version = $1)",
                &[version],
            )
            .await?
            .try_get(0)?;
        if !done {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at)
                 VALUES ($1, EXTRACT(EPOCH FROM now())::BIGINT)",
                &[version],
            )
            .await?;
        }
        tx.commit().await?;
    }
    let found: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    if found > latest() {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: latest(),
        });
    }
    Ok(())
}
