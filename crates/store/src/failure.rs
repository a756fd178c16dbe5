//! How a failed database write is classified: the database is having an outage, or it rejects
//! this event's data. One table, read by longest SQLSTATE prefix; whatever it does not name is an
//! outage, because retrying an event costs a delay while dead-lettering a good one loses state.
//!
//! "The event's fault" is only ever a suspicion from this table: the worker confirms it with a
//! canary write (`BatchWriter::canary`) before dead-lettering anything, so a database that rejects
//! every write in a way this table did not foresee is still treated as an outage.

use std::fmt;

/// Whose fault a failed write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The database itself (read-only, credentials, privileges, schema not migrated, timeouts,
    /// connection, resources): retry with backoff behind the breaker, keep the events alive.
    Outage,
    /// The database rejects what this event carries (a value, a constraint): isolate it by
    /// bisection and, once a canary write shows the database accepts writes, dead-letter it.
    Event,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Outage => "outage",
            Self::Event => "event",
        })
    }
}

/// SQLSTATE class (two characters) or code (five), its cause, and why. The longest matching
/// prefix wins; a code here overrides its class.
pub const SQLSTATE_RULES: &[(&str, Cause, &str)] = &[
    ("08", Cause::Outage, "connection exception"),
    (
        "0A",
        Cause::Outage,
        "feature not supported: the server is not what the schema expects",
    ),
    (
        "21",
        Cause::Event,
        "cardinality violation in this event's rows",
    ),
    (
        "22",
        Cause::Event,
        "data exception: a value this event carries (bad JSON, out of range)",
    ),
    (
        "23",
        Cause::Event,
        "integrity constraint violation by this event's row",
    ),
    ("25", Cause::Outage, "invalid transaction state"),
    (
        "25006",
        Cause::Outage,
        "read-only transaction: a failover, or a pooler pointed at a replica",
    ),
    (
        "28",
        Cause::Outage,
        "invalid authorization: the password was rotated",
    ),
    ("3D", Cause::Outage, "the database does not exist"),
    ("3F", Cause::Outage, "the schema does not exist"),
    (
        "40",
        Cause::Outage,
        "transaction rollback: serialization failure or deadlock",
    ),
    ("42", Cause::Outage, "access rule or schema mismatch"),
    (
        "42501",
        Cause::Outage,
        "insufficient privilege: a grant was revoked",
    ),
    (
        "42P01",
        Cause::Outage,
        "undefined table: a migration is not applied",
    ),
    (
        "42703",
        Cause::Outage,
        "undefined column: a migration is not applied",
    ),
    (
        "42883",
        Cause::Outage,
        "undefined function: a migration is not applied",
    ),
    (
        "44",
        Cause::Event,
        "WITH CHECK OPTION violation by this event's row",
    ),
    (
        "53",
        Cause::Outage,
        "insufficient resources: disk full, out of memory, too many connections",
    ),
    (
        "54",
        Cause::Event,
        "program limit exceeded by this event (an index row too large)",
    ),
    ("55", Cause::Outage, "object not in prerequisite state"),
    ("55P03", Cause::Outage, "lock not available: lock timeout"),
    (
        "57",
        Cause::Outage,
        "operator intervention: shutdown, cancel",
    ),
    ("57014", Cause::Outage, "query canceled: statement timeout"),
    ("58", Cause::Outage, "system error: I/O"),
    ("72", Cause::Outage, "snapshot too old"),
    ("F0", Cause::Outage, "configuration file error"),
    (
        "P0001",
        Cause::Event,
        "raised by a rule (trigger) that refuses this event's data",
    ),
    ("XX", Cause::Outage, "internal error"),
];

/// Outage-class SQLSTATEs one write can cause on its own: a statement that always runs past the
/// timeout (a pathological body, an application's trigger, a row lock never let go), or needs
/// more memory than there is. Repeated `HOOKLINE_ISOLATE_AFTER` times with a canary write
/// succeeding after each, they are the write's own (the worker's `commit.rs`). Serialization
/// failures and deadlocks (class 40) pass with a retry and are never suspected; the other
/// outages fail the canary too.
pub const SUSPECT_WHEN_REPEATED: &[(&str, &str)] = &[
    ("57014", "query canceled: a statement timeout"),
    ("53200", "out of memory"),
];

/// Whether `e` is one of [`SUSPECT_WHEN_REPEATED`].
pub fn suspect_when_repeated(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    let code = db.code();
    SUSPECT_WHEN_REPEATED
        .iter()
        .any(|(c, _)| code.as_deref() == Some(*c))
}

/// The cause of a SQLSTATE, by the longest prefix in `SQLSTATE_RULES`; unknown codes are outages.
pub fn cause_of_sqlstate(code: &str) -> Cause {
    SQLSTATE_RULES
        .iter()
        .filter(|(prefix, _, _)| code.starts_with(prefix))
        .max_by_key(|(prefix, _, _)| prefix.len())
        .map_or(Cause::Outage, |(_, cause, _)| *cause)
}

/// The cause of any error sqlx reports.
pub fn cause_of(e: &sqlx::Error) -> Cause {
    match e {
        sqlx::Error::Database(db) => cause_of_sqlstate(db.code().as_deref().unwrap_or("")),
        // A value of this event that cannot be sent to the server at all.
        sqlx::Error::Encode(_) => Cause::Event,
        // Connection, pool, TLS, protocol, a result that does not fit the code (schema
        // mismatch), configuration: nothing an event did.
        _ => Cause::Outage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One case per row of `SQLSTATE_RULES`: a real SQLSTATE under that prefix, and its cause.
    const CASES: &[(&str, Cause)] = &[
        ("08006", Cause::Outage), // connection_failure
        ("0A000", Cause::Outage), // feature_not_supported
        ("21000", Cause::Event),  // cardinality_violation
        ("22P02", Cause::Event),  // invalid_text_representation (bad JSON)
        ("23514", Cause::Event),  // check_violation
        ("25P02", Cause::Outage), // in_failed_sql_transaction
        ("25006", Cause::Outage), // read_only_sql_transaction
        ("28P01", Cause::Outage), // invalid_password
        ("3D000", Cause::Outage), // invalid_catalog_name
        ("3F000", Cause::Outage), // invalid_schema_name
        ("40001", Cause::Outage), // serialization_failure
        ("42601", Cause::Outage), // syntax_error
        ("42501", Cause::Outage), // insufficient_privilege
        ("42P01", Cause::Outage), // undefined_table
        ("42703", Cause::Outage), // undefined_column
        ("42883", Cause::Outage), // undefined_function
        ("44000", Cause::Event),  // with_check_option_violation
        ("53100", Cause::Outage), // disk_full
        ("54000", Cause::Event),  // program_limit_exceeded
        ("55006", Cause::Outage), // object_in_use
        ("55P03", Cause::Outage), // lock_not_available
        ("57P01", Cause::Outage), // admin_shutdown
        ("57014", Cause::Outage), // query_canceled
        ("58030", Cause::Outage), // io_error
        ("72000", Cause::Outage), // snapshot_too_old
        ("F0000", Cause::Outage), // config_file_error
        ("P0001", Cause::Event),  // raise_exception
        ("XX000", Cause::Outage), // internal_error
    ];

    #[test]
    fn every_rule_has_a_case_and_every_case_its_rule() {
        assert_eq!(CASES.len(), SQLSTATE_RULES.len(), "one case per rule");
        for ((prefix, cause, why), (code, expected)) in SQLSTATE_RULES.iter().zip(CASES) {
            assert!(
                code.starts_with(prefix),
                "case {code} belongs to rule {prefix}"
            );
            assert_eq!(cause, expected, "rule {prefix} ({why})");
            assert_eq!(cause_of_sqlstate(code), *expected, "{code} under {prefix}");
        }
    }

    #[test]
    fn only_timeouts_and_memory_are_suspected_when_repeated() {
        for (code, _) in SUSPECT_WHEN_REPEATED {
            assert_eq!(
                cause_of_sqlstate(code),
                Cause::Outage,
                "{code} is an outage first"
            );
        }
        assert!(!suspect_when_repeated(&sqlx::Error::PoolTimedOut));
        let codes: Vec<&str> = SUSPECT_WHEN_REPEATED.iter().map(|(c, _)| *c).collect();
        for transient in ["40001", "40P01", "25006", "08006", "53100"] {
            assert!(
                !codes.contains(&transient),
                "{transient} is never suspected"
            );
        }
    }

    #[test]
    fn a_code_overrides_its_class_and_unknown_codes_are_outages() {
        assert_eq!(
            cause_of_sqlstate("P0002"),
            Cause::Outage,
            "only P0001 is a rule"
        );
        assert_eq!(
            cause_of_sqlstate("HV000"),
            Cause::Outage,
            "not in the table"
        );
        assert_eq!(cause_of_sqlstate(""), Cause::Outage, "no code at all");
        assert_eq!(cause_of_sqlstate("25006"), Cause::Outage);
        assert_eq!(cause_of_sqlstate("23505"), Cause::Event);
    }

    #[test]
    fn errors_outside_the_database_are_outages_except_encoding() {
        assert_eq!(cause_of(&sqlx::Error::PoolTimedOut), Cause::Outage);
        assert_eq!(cause_of(&sqlx::Error::PoolClosed), Cause::Outage);
        assert_eq!(
            cause_of(&sqlx::Error::Io(std::io::Error::other("reset"))),
            Cause::Outage
        );
        assert_eq!(
            cause_of(&sqlx::Error::ColumnNotFound("status".into())),
            Cause::Outage
        );
        assert_eq!(
            cause_of(&sqlx::Error::Encode("not encodable".into())),
            Cause::Event
        );
    }
}
