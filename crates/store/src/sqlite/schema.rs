//! Versioned migrations. Each entry runs once, in its own transaction, in order; the
//! applied versions are recorded in `schema_migrations`.

use rusqlite::Connection;

use crate::StoreError;

pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "
    CREATE TABLE devices (
        serial_number TEXT PRIMARY KEY,
        status        TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    );
    CREATE TABLE certificates (
        serial        TEXT PRIMARY KEY,
        device_serial TEXT NOT NULL REFERENCES devices(serial_number),
        issuer        TEXT NOT NULL,
        profile       TEXT NOT NULL,
        kind          TEXT NOT NULL,
        not_before    INTEGER NOT NULL,
        not_after     INTEGER NOT NULL,
        spki_sha256   TEXT NOT NULL,
        der           BLOB NOT NULL,
        status        TEXT NOT NULL,
        replaces      TEXT REFERENCES certificates(serial),
        issued_at     INTEGER NOT NULL
    );
    -- A device's certificates, newest first (renewal, listing).
    CREATE INDEX certificates_by_device ON certificates(device_serial, not_after);
    -- Expiry scans over millions of rows: range on not_after within a status...
    CREATE INDEX certificates_by_expiry ON certificates(status, not_after);
    -- ...and across statuses (listing by expiry).
    CREATE INDEX certificates_by_not_after ON certificates(not_after);
    -- Finding a certificate's successor.
    CREATE INDEX certificates_by_replaces ON certificates(replaces) WHERE replaces IS NOT NULL;
    CREATE TABLE accounts (
        name           TEXT PRIMARY KEY,
        password_hash  TEXT NOT NULL,
        label          TEXT,
        serial_pattern TEXT,
        enabled        INTEGER NOT NULL DEFAULT 1,
        created_at     INTEGER NOT NULL
    );
    ",
    ),
    (
        2,
        "
    ALTER TABLE certificates ADD COLUMN revoked_at INTEGER;
    ALTER TABLE certificates ADD COLUMN revocation_reason TEXT;
    -- CRL building: the revoked and held certificates of one CA.
    CREATE INDEX certificates_not_valid ON certificates(issuer, status) WHERE status != 'valid';
    -- Monotonic CRL numbers per CA (RFC 5280 section 5.2.3) and the latest CRL.
    CREATE TABLE crls (
        issuer      TEXT PRIMARY KEY,
        number      INTEGER NOT NULL,
        this_update INTEGER NOT NULL,
        next_update INTEGER NOT NULL,
        der         BLOB
    );
    -- Bumped by every status change, so publishers (CRL, OCSP caches) notice them.
    CREATE TABLE status_revision (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        revision INTEGER NOT NULL
    );
    INSERT INTO status_revision (id, revision) VALUES (1, 0);
    ",
    ),
    (
        3,
        "
    -- Factory stations: registration authorities for birth certificates.
    CREATE TABLE stations (
        name              TEXT PRIMARY KEY,
        serial_pattern    TEXT NOT NULL,
        range_from        TEXT,
        range_to          TEXT,
        quota             INTEGER,
        issued            INTEGER NOT NULL DEFAULT 0,
        valid_days        INTEGER NOT NULL,
        allow_reissue     INTEGER NOT NULL DEFAULT 0,
        status            TEXT NOT NULL,
        credential_serial TEXT NOT NULL,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL
    );
    ALTER TABLE devices ADD COLUMN station TEXT;
    ALTER TABLE devices ADD COLUMN model TEXT;
    ALTER TABLE devices ADD COLUMN batch TEXT;
    -- Live birth certificates of a device (duplicate check).
    CREATE INDEX certificates_by_device_kind ON certificates(device_serial, kind, status);
    -- The audit trail: append-only, each row chained to the previous one by SHA-256.
    CREATE TABLE audit (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        at        INTEGER NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        subject   TEXT NOT NULL,
        outcome   TEXT NOT NULL,
        detail    TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    );
    CREATE INDEX audit_by_actor ON audit(actor, id);
    ",
    ),
    (
        4,
        "
    -- Expiry monitoring (crates/monitor): one row per scan that changed anything...
    CREATE TABLE monitor_scans (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL
    );
    -- ...escalations: a (kind, device, certificate) needing attention, its current tier...
    CREATE TABLE escalations (
        id                 INTEGER PRIMARY KEY,
        kind               TEXT NOT NULL,
        device_serial      TEXT NOT NULL,
        certificate_serial TEXT NOT NULL,
        tier               TEXT NOT NULL,
        not_after          INTEGER,
        opened_at          INTEGER NOT NULL,
        notified_at        INTEGER,
        notified_scan      INTEGER REFERENCES monitor_scans(id),
        resolved_at        INTEGER,
        resolution         TEXT
    );
    CREATE UNIQUE INDEX escalations_open
        ON escalations(kind, device_serial, certificate_serial) WHERE resolved_at IS NULL;
    -- ...and the durable outbox of rendered notifications, retried until delivered.
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        scan_id         INTEGER NOT NULL REFERENCES monitor_scans(id),
        channel         TEXT NOT NULL,
        tier            TEXT NOT NULL,
        event           TEXT NOT NULL,
        payload         TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        state           TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        lease_until     INTEGER,
        last_error      TEXT,
        delivered_at    INTEGER
    );
    CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
    CREATE INDEX outbox_by_scan ON outbox(scan_id, tier);
    -- Leases so one node runs each background job.
    CREATE TABLE leases (
        name   TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        until  INTEGER NOT NULL
    );
    -- Devices still on their birth certificate.
    CREATE INDEX devices_by_status ON devices(status, created_at);
    ",
    ),
    (
        5,
        "
    -- Failing renewals (crates/monitor): refused requests within a recent window, by
    -- actor; covering, so the window scan never reads the audit rows themselves.
    CREATE INDEX audit_refusals ON audit(at, actor) WHERE outcome = 'refused';
    ",
    ),
    (
        6,
        "
    -- Every RA decision with the result of each rule (JSON), newest last.
    CREATE TABLE decisions (
        id                 INTEGER PRIMARY KEY AUTOINCREMENT,
        at                 INTEGER NOT NULL,
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
        approval_id        INTEGER
    );
    CREATE INDEX decisions_by_device ON decisions(device_serial, id);
    -- Manual approvals: one open (pending or approved) request per request key.
    CREATE TABLE approvals (
        id                 INTEGER PRIMARY KEY AUTOINCREMENT,
        request_key        TEXT NOT NULL,
        device_serial      TEXT NOT NULL,
        label              TEXT,
        profile            TEXT NOT NULL,
        operation          TEXT NOT NULL,
        client             TEXT NOT NULL,
        reason             TEXT NOT NULL,
        created_at         INTEGER NOT NULL,
        state              TEXT NOT NULL,
        decided_by         TEXT,
        decided_at         INTEGER,
        decision_reason    TEXT,
        claimed_until      INTEGER,
        certificate_serial TEXT,
        polls              INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX approvals_by_key ON approvals(request_key, id);
    CREATE UNIQUE INDEX approvals_open ON approvals(request_key)
        WHERE state IN ('pending', 'approved');
    CREATE INDEX approvals_by_state ON approvals(state, id);
    -- An operator's override of the re-enrollment window.
    ALTER TABLE devices ADD COLUMN reenroll_forced_until INTEGER;
    ",
    ),
    (
        7,
        "
    -- The number of the CRL stored in `der` (`number` runs ahead while one is built), so
    -- nodes that do not build CRLs serve exactly what was recorded.
    ALTER TABLE crls ADD COLUMN der_number INTEGER;
    UPDATE crls SET der_number = number WHERE der IS NOT NULL;
    ",
    ),
    (
        8,
        "
    -- Enrollment accounts (issue 13): an account without a serial pattern needs
    -- `--any-serial`, and enrolls only devices new to the inventory unless added with
    -- `--allow-known-devices`. Accounts stored without a pattern keep naming any serial,
    -- but like every account now enroll only new devices, each once.
    ALTER TABLE accounts ADD COLUMN any_serial INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE accounts ADD COLUMN known_devices INTEGER NOT NULL DEFAULT 0;
    UPDATE accounts SET any_serial = 1 WHERE serial_pattern IS NULL;
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
        added_at       INTEGER NOT NULL
    );
    ",
    ),
    (
        9,
        "
    -- The admin API (issue 16). API tokens: only the SHA-256 of the secret is kept; a
    -- revoked token stays, so its name is never used again.
    CREATE TABLE api_tokens (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL UNIQUE,
        created_at    INTEGER NOT NULL,
        expires_at    INTEGER,
        created_by    TEXT NOT NULL,
        revoked_at    INTEGER,
        last_used_at  INTEGER
    );
    -- Operator users (argon2id PHC strings) and their login sessions.
    CREATE TABLE operator_users (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        enabled       INTEGER NOT NULL DEFAULT 1,
        last_login_at INTEGER
    );
    CREATE TABLE operator_sessions (
        secret_sha256 TEXT PRIMARY KEY,
        user_name     TEXT NOT NULL REFERENCES operator_users(name),
        created_at    INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL,
        last_seen_at  INTEGER NOT NULL
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
    -- profile, status and UTC day of not_after, and decisions by UTC day and outcome,
    -- both kept by triggers in the transaction of every write (one writer: no contention).
    CREATE TABLE certificate_counts (
        kind       TEXT NOT NULL,
        profile    TEXT NOT NULL,
        status     TEXT NOT NULL,
        expiry_day INTEGER NOT NULL,
        n          INTEGER NOT NULL,
        PRIMARY KEY (kind, profile, status, expiry_day)
    ) WITHOUT ROWID;
    INSERT INTO certificate_counts (kind, profile, status, expiry_day, n)
        SELECT kind, profile, status,
               (not_after - ((not_after % 86400) + 86400) % 86400) / 86400, COUNT(*)
        FROM certificates GROUP BY 1, 2, 3, 4;
    CREATE TRIGGER certificate_counts_insert AFTER INSERT ON certificates BEGIN
        INSERT INTO certificate_counts (kind, profile, status, expiry_day, n)
        VALUES (new.kind, new.profile, new.status,
                (new.not_after - ((new.not_after % 86400) + 86400) % 86400) / 86400, 1)
        ON CONFLICT (kind, profile, status, expiry_day) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER certificate_counts_update
        AFTER UPDATE OF kind, profile, status, not_after ON certificates
        WHEN old.kind IS NOT new.kind OR old.profile IS NOT new.profile
          OR old.status IS NOT new.status OR old.not_after IS NOT new.not_after BEGIN
        UPDATE certificate_counts SET n = n - 1
        WHERE kind = old.kind AND profile = old.profile AND status = old.status
          AND expiry_day = (old.not_after - ((old.not_after % 86400) + 86400) % 86400) / 86400;
        INSERT INTO certificate_counts (kind, profile, status, expiry_day, n)
        VALUES (new.kind, new.profile, new.status,
                (new.not_after - ((new.not_after % 86400) + 86400) % 86400) / 86400, 1)
        ON CONFLICT (kind, profile, status, expiry_day) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER certificate_counts_delete AFTER DELETE ON certificates BEGIN
        UPDATE certificate_counts SET n = n - 1
        WHERE kind = old.kind AND profile = old.profile AND status = old.status
          AND expiry_day = (old.not_after - ((old.not_after % 86400) + 86400) % 86400) / 86400;
    END;
    CREATE TABLE decision_counts (
        day     INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        n       INTEGER NOT NULL,
        PRIMARY KEY (day, outcome)
    ) WITHOUT ROWID;
    INSERT INTO decision_counts (day, outcome, n)
        SELECT (at - ((at % 86400) + 86400) % 86400) / 86400, outcome, COUNT(*)
        FROM decisions GROUP BY 1, 2;
    CREATE TRIGGER decision_counts_insert AFTER INSERT ON decisions BEGIN
        INSERT INTO decision_counts (day, outcome, n)
        VALUES ((new.at - ((new.at % 86400) + 86400) % 86400) / 86400, new.outcome, 1)
        ON CONFLICT (day, outcome) DO UPDATE SET n = n + 1;
    END;
    CREATE TABLE device_counts (
        status TEXT PRIMARY KEY,
        n      INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO device_counts (status, n) SELECT status, COUNT(*) FROM devices GROUP BY 1;
    CREATE TRIGGER device_counts_insert AFTER INSERT ON devices BEGIN
        INSERT INTO device_counts (status, n) VALUES (new.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER device_counts_update AFTER UPDATE OF status ON devices
        WHEN old.status IS NOT new.status BEGIN
        UPDATE device_counts SET n = n - 1 WHERE status = old.status;
        INSERT INTO device_counts (status, n) VALUES (new.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER device_counts_delete AFTER DELETE ON devices BEGIN
        UPDATE device_counts SET n = n - 1 WHERE status = old.status;
    END;
    ",
    ),
    (
        10,
        "
    -- Every key and certificate each CA has had (issue 18): a rollover records the next
    -- generation; every node issues with the newest one whose activation time has come.
    CREATE TABLE ca_generations (
        ca              TEXT NOT NULL,
        generation      INTEGER NOT NULL,
        certificate     BLOB NOT NULL,
        key_ref         TEXT NOT NULL,
        not_before      INTEGER NOT NULL,
        not_after       INTEGER NOT NULL,
        activate_at     INTEGER NOT NULL,
        created_at      INTEGER NOT NULL,
        root_generation INTEGER,
        link_new_with_old BLOB,
        link_old_with_new BLOB,
        PRIMARY KEY (ca, generation)
    );
    ",
    ),
    (
        11,
        "
    -- CMP (issue 19): one-time shared secrets (only a digest) and transactions in flight.
    CREATE TABLE cmp_secrets (
        reference     TEXT PRIMARY KEY,
        device_serial TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL,
        created_by    TEXT NOT NULL,
        consumed_at   INTEGER,
        consumed_by   BLOB
    );
    CREATE TABLE cmp_transactions (
        transaction_id     BLOB PRIMARY KEY,
        state              TEXT NOT NULL,
        server_nonce       BLOB NOT NULL,
        protection         TEXT NOT NULL,
        device_serial      TEXT NOT NULL,
        label              TEXT,
        request_kind       TEXT NOT NULL,
        request_der        BLOB,
        certificate_serial TEXT,
        certificate_der    BLOB,
        confirm_by         INTEGER,
        created_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL
    );
    CREATE INDEX cmp_transactions_unconfirmed ON cmp_transactions (confirm_by)
        WHERE state = 'unconfirmed';
    ",
    ),
    (
        12,
        "
    -- SCEP (issue 20): one-time challenge passwords (hashed) bound to a device serial,
    -- and transactions (the request key, the CSR a pending request is polled with).
    CREATE TABLE scep_challenges (
        secret_sha256 TEXT PRIMARY KEY,
        device_serial TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL,
        created_by    TEXT NOT NULL,
        used_at       INTEGER
    );
    CREATE TABLE scep_transactions (
        transaction_id TEXT PRIMARY KEY,
        key_sha256     TEXT NOT NULL,
        label          TEXT,
        secret_device  TEXT,
        csr            BLOB NOT NULL,
        created_at     INTEGER NOT NULL,
        certificate_serial TEXT
    );
    ",
    ),
    (
        13,
        "
    -- The CRL query (issue 21) reads every unexpired revoked certificate of an issuer in
    -- serial order: from this covering index alone, already in order, instead of one table
    -- lookup per entry and a sort (5 s for 1,000,000 entries before).
    CREATE INDEX certificates_revoked_by_serial
        ON certificates(issuer, serial, not_after, revoked_at, revocation_reason, status)
        WHERE status != 'valid';
    ",
    ),
    (
        14,
        "
    -- The per-device limits (issue 21) count a device's valid unexpired operational
    -- certificates and those issued since an instant on every enrollment: with not_after
    -- and issued_at in the device's index the count reads only that index, not one table
    -- row (with its certificate body) per certificate of the device. The same index
    -- serves what certificates_by_device(device_serial, not_after) did (a device's few
    -- certificates, sorted when listed), so every issuance inserts into one device index
    -- instead of two.
    DROP INDEX certificates_by_device_kind;
    CREATE INDEX certificates_by_device_kind
        ON certificates(device_serial, kind, status, not_after, issued_at);
    DROP INDEX certificates_by_device;
    ",
    ),
];

/// The newest schema version this build knows.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map(|(v, _)| *v).unwrap_or(0)
}

/// Applies pending migrations. `BEGIN IMMEDIATE` takes the write lock first, so two
/// processes opening a new database at once apply each migration exactly once.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    for (version, sql) in MIGRATIONS {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let done: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [version],
            |r| r.get(0),
        )?;
        if !done {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, unixepoch())",
                [version],
            )?;
        }
        tx.commit()?;
    }
    let found: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    if found > latest() {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: latest(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database at version 7 (before device bindings) keeps a safe meaning: accounts
    /// without a pattern become any-serial (new devices only, as every account), and known
    /// devices get the profile and birth CA of their oldest certificates.
    #[test]
    fn version_8_migrates_accounts_and_device_bindings() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= 7) {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
                [version],
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO accounts (name, password_hash, created_at) VALUES ('old', 'h', 0);
             INSERT INTO accounts (name, password_hash, serial_pattern, created_at)
               VALUES ('scoped', 'h', '^SN-', 0);
             INSERT INTO devices (serial_number, status, created_at, updated_at)
               VALUES ('SN-1', 'active', 0, 0), ('SN-2', 'manufactured', 0, 0);
             INSERT INTO certificates (serial, device_serial, issuer, profile, kind, not_before,
               not_after, spki_sha256, der, status, issued_at) VALUES
               ('b1', 'SN-1', 'manufacturing', 'birth', 'birth', 0, 9, 'x', x'00', 'valid', 1),
               ('o1', 'SN-1', 'operational', 'restricted', 'operational', 0, 9, 'x', x'00', 'valid', 2),
               ('o2', 'SN-1', 'operational', 'long', 'operational', 0, 9, 'x', x'00', 'valid', 3),
               ('b2', 'SN-2', 'acme', 'birth', 'birth', 0, 9, 'x', x'00', 'valid', 1);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let account = |name: &str| -> (bool, bool) {
            conn.query_row(
                "SELECT any_serial, known_devices FROM accounts WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        assert_eq!(account("old"), (true, false));
        assert_eq!(account("scoped"), (false, false));
        let device = |serial: &str| -> (Option<String>, Option<String>) {
            conn.query_row(
                "SELECT profile, birth_issuer FROM devices WHERE serial_number = ?1",
                [serial],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        assert_eq!(
            device("SN-1"),
            (Some("restricted".into()), Some("manufacturing".into()))
        );
        assert_eq!(device("SN-2"), (None, Some("acme".into())));
    }
}
