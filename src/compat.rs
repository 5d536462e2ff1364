//! Which source and target PostgreSQL versions may be paired.
//!
//! A dump of a newer server into an older one is not something PostgreSQL promises to work:
//! the older server may lack syntax, types or catalog features the source uses, and the
//! failure would come halfway through, after the target database was created. So it is
//! refused up front, before anything is created, unless the user says they know
//! (`--skip-db-version-check`, the seed tool's flag); then every object the older server
//! cannot hold fails with its own statement and message.

use thiserror::Error;

/// The oldest server the catalog queries are written for.
pub const OLDEST_SUPPORTED: i32 = 100000;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VersionError {
    #[error(
        "the target server runs PostgreSQL {target}, older than the source's {source_version}: \
         a newer source is not migrated into an older target, because objects the older server \
         cannot hold would fail halfway through (use --skip-db-version-check to try anyway)"
    )]
    Downgrade {
        /// `source` would be taken by thiserror as the error source.
        source_version: String,
        target: String,
    },
    #[error("the {role} server runs PostgreSQL {version}; pgferry needs PostgreSQL 10 or later")]
    TooOld { role: &'static str, version: String },
}

/// Refuses a target older (by major version) than the source unless `skip_check`, and a server
/// older than PostgreSQL 10 in any case. Versions are `server_version_num` values (150010).
pub fn check_versions(src_num: i32, dst_num: i32, skip_check: bool) -> Result<(), VersionError> {
    for (role, num) in [("source", src_num), ("target", dst_num)] {
        if num < OLDEST_SUPPORTED {
            return Err(VersionError::TooOld {
                role,
                version: display_version(num),
            });
        }
    }
    if !skip_check && major(dst_num) < major(src_num) {
        return Err(VersionError::Downgrade {
            source_version: display_version(src_num),
            target: display_version(dst_num),
        });
    }
    Ok(())
}

/// The server's `server_version_num` (150010), the crate's one query for it: every module that
/// chooses SQL by version asks here rather than writing the query again.
pub async fn server_version_num(
    client: &tokio_postgres::Client,
) -> Result<i32, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT pg_catalog.current_setting('server_version_num')::int4",
            &[],
        )
        .await?;
    row.try_get(0)
}

/// The first number of a `server_version_num`'s version: the major from PostgreSQL 10 on (15
/// for 150010); 9 for any 9.x (90624), whose major had two numbers and which pgferry refuses
/// anyway ([`OLDEST_SUPPORTED`]).
pub fn major(num: i32) -> i32 {
    num / 10000
}

/// `150010` → `15.10`; `90624` → `9.6.24`.
pub fn display_version(num: i32) -> String {
    if num >= OLDEST_SUPPORTED {
        format!("{}.{}", num / 10000, num % 10000)
    } else {
        format!("{}.{}.{}", num / 10000, num / 100 % 100, num % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_or_newer_target_is_fine() {
        assert_eq!(check_versions(150010, 150010, false), Ok(()));
        assert_eq!(check_versions(150010, 150002, false), Ok(()));
        assert_eq!(check_versions(150010, 160002, false), Ok(()));
        assert_eq!(check_versions(160002, 180006, false), Ok(()));
    }

    #[test]
    fn older_target_is_refused_naming_both_versions_and_the_flag() {
        let err = check_versions(180006, 150010, false).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("18.6") && msg.contains("15.10"), "{msg}");
        assert!(msg.contains("--skip-db-version-check"), "{msg}");
        assert_eq!(check_versions(180006, 150010, true), Ok(()));
    }

    #[test]
    fn servers_before_10_are_refused_even_when_skipping() {
        let err = check_versions(90624, 150010, true).unwrap_err();
        assert!(err
            .to_string()
            .contains("source server runs PostgreSQL 9.6.24"));
    }
}
