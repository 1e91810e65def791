/// The fleet's tables in PostgreSQL, created and migrated by certgate: each migration is
/// applied once, in order, recorded in `certgate_schema`, under an advisory lock so nodes
/// starting together do not race. A database that records a migration this binary does
/// not know was written by a newer certgate and is refused, as a newer SQLite state is.
enum FleetSchema {
    struct Migration {
        let version: String
        let sql: [String]
    }

    /// The advisory lock key taken while migrating and seeding ("certgate" in ASCII).
    static let setupLock: Int64 = 0x6365_7274_6761_7465

    static let migrations: [Migration] = [
        Migration(version: "v1", sql: [
            """
            CREATE TABLE certgate_fleet (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                fleet_id TEXT NOT NULL,
                generation BIGINT NOT NULL,
                committed_at DOUBLE PRECISION NOT NULL,
                source TEXT NOT NULL,
                node TEXT NOT NULL,
                forgotten_through BIGINT NOT NULL DEFAULT -1
            )
            """,
            """
            CREATE TABLE certgate_certificates (
                name TEXT PRIMARY KEY,
                conf TEXT NOT NULL,
                certificate_pem TEXT NOT NULL,
                key_pem TEXT,
                cert_inline BOOLEAN NOT NULL,
                key_inline BOOLEAN NOT NULL,
                verified BYTEA,
                generation BIGINT NOT NULL
            )
            """,
            "CREATE INDEX certgate_certificates_generation ON certgate_certificates (generation)",
            "CREATE TABLE certgate_removed (name TEXT PRIMARY KEY, generation BIGINT NOT NULL)",
            "CREATE INDEX certgate_removed_generation ON certgate_removed (generation)",
        ]),
        Migration(version: "v2-acme", sql: [
            "CREATE TABLE certgate_acme_accounts (directory TEXT PRIMARY KEY, key_pem TEXT NOT NULL, account_url TEXT)",
            """
            CREATE TABLE certgate_acme_certificates (
                name TEXT PRIMARY KEY,
                issuer TEXT NOT NULL,
                domains TEXT NOT NULL,
                chain_pem TEXT NOT NULL,
                key_pem TEXT NOT NULL,
                not_before DOUBLE PRECISION NOT NULL,
                not_after DOUBLE PRECISION NOT NULL,
                certificate_url TEXT NOT NULL,
                obtained_at DOUBLE PRECISION NOT NULL
            )
            """,
        ]),
        Migration(version: "v3-challenges", sql: [
            // The answers to challenges in progress, for whichever node the CA reaches:
            // http-01 by token (answer: the key authorization), tls-alpn-01 by name (the
            // validation certificate and its throw-away key, DER).
            """
            CREATE TABLE certgate_challenges (
                kind TEXT NOT NULL,
                key TEXT NOT NULL,
                answer TEXT NOT NULL,
                certificate BYTEA,
                private_key BYTEA,
                node TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (kind, key)
            )
            """,
            "CREATE TABLE certgate_challenge_seen (kind TEXT NOT NULL, key TEXT NOT NULL, node TEXT NOT NULL, PRIMARY KEY (kind, key, node))",
            // Each node's heartbeat, with the process (instance) that sent it.
            "CREATE TABLE certgate_nodes (node TEXT PRIMARY KEY, instance TEXT NOT NULL, seen_at DOUBLE PRECISION NOT NULL)",
        ]),
        Migration(version: "v4-on-demand", sql: [
            // Certificates obtained on demand, by host name, for every node; last_used is the
            // latest handshake any node served one to.
            """
            CREATE TABLE certgate_acme_on_demand (
                host TEXT PRIMARY KEY,
                entry TEXT NOT NULL,
                issuer TEXT NOT NULL,
                chain_pem TEXT NOT NULL,
                key_pem TEXT NOT NULL,
                not_before DOUBLE PRECISION NOT NULL,
                not_after DOUBLE PRECISION NOT NULL,
                certificate_url TEXT NOT NULL,
                obtained_at DOUBLE PRECISION NOT NULL,
                last_used DOUBLE PRECISION NOT NULL
            )
            """,
            // Every acme entry of the fleet's set as sent (no certificate material), pending and
            // on-demand ones included — those are in no set — so every node knows them all.
            "CREATE TABLE certgate_acme_entries (name TEXT PRIMARY KEY, conf TEXT NOT NULL)",
            // A fleet set up before: its acme entries are those of its set.
            """
            INSERT INTO certgate_acme_entries (name, conf)
            SELECT name, (conf::jsonb - 'tls_cert' - 'tls_key')::text FROM certgate_certificates WHERE conf::jsonb ? 'acme'
            """,
        ]),
    ]

    /// Removals are listed for this many generations; a node further behind loads the whole set.
    static let removalsKept: UInt64 = 10_000
}
