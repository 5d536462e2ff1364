//! `pgferry check`: what a migration needs to know about a server, read in one short session.
//!
//! Everything here is read-only: catalog views and `SHOW`, nothing is created. The report says
//! whether logical replication can work (wal_level, privileges, free slots and WAL senders) so
//! the user learns it before starting a migration, not halfway through.

use super::{CheckArgs, CliError};
use crate::server::{inspect, CheckError, ServerReport};
use crate::units::format_size;

/// Human-readable report, one fact per line.
pub fn render_text(r: &ServerReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "{} {}", r.role, r.server);
    let _ = writeln!(
        s,
        "  server version         {} ({})",
        r.server_version, r.server_version_num
    );
    match &r.tls {
        Some(t) => {
            let _ = writeln!(s, "  TLS                    {} {}", t.version, t.cipher);
        }
        None => {
            let _ = writeln!(s, "  TLS                    not in use");
        }
    }
    let u = &r.user;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(
        s,
        "  user                   {} (superuser: {}, replication: {}, createrole: {}, createdb: {}{})",
        u.name,
        yes_no(u.superuser),
        yes_no(u.replication),
        yes_no(u.createrole),
        yes_no(u.createdb),
        if u.rds_roles.is_empty() { String::new() } else { format!(", member of {}", u.rds_roles.join(", ")) }
    );
    let _ = writeln!(s, "  wal_level              {}", r.wal_level);
    let _ = writeln!(
        s,
        "  replication slots      {} free of {}",
        (i64::from(r.max_replication_slots) - r.used_replication_slots).max(0),
        r.max_replication_slots
    );
    let _ = writeln!(
        s,
        "  WAL senders            {} free of {}",
        (i64::from(r.max_wal_senders) - r.used_wal_senders).max(0),
        r.max_wal_senders
    );
    if let Some(keep) = r.max_slot_wal_keep_size {
        let _ = writeln!(
            s,
            "  max_slot_wal_keep_size {} (a slot further behind is invalidated)",
            format_size(keep)
        );
    }
    let _ = writeln!(s, "  databases              {}", r.databases.len());
    for db in &r.databases {
        let size = match db.size_bytes {
            Some(b) => format_size(b.max(0) as u64),
            None => "no CONNECT privilege".to_string(),
        };
        let _ = writeln!(s, "    {:<30} {}", db.name, size);
    }
    if r.replication_blockers.is_empty() {
        let _ = writeln!(s, "  logical replication    possible");
    } else {
        let _ = writeln!(s, "  logical replication    NOT possible as source:");
        for b in &r.replication_blockers {
            let _ = writeln!(s, "    - {b}");
        }
    }
    s
}

/// `pgferry check`: inspects the source and, when given, the target. Exit 1 (with a one-line
/// reason naming the server) when a server cannot be reached or read; the servers that could
/// be read are still reported (with --json, in the error document's `servers`).
pub async fn run_cli(args: &CheckArgs) -> Result<u8, CliError> {
    let mut servers = vec![(
        "source",
        crate::cli::conn_config("source", &args.source.source)?,
    )];
    if let Some(target) = &args.target.target {
        servers.push(("target", crate::cli::conn_config("target", target)?));
    }
    let mut reports = Vec::new();
    let mut failure = None;
    for (role, cfg) in &servers {
        match inspect(role, cfg).await {
            Ok(report) => reports.push(report),
            Err(err) => {
                failure = Some(match err {
                    CheckError::Connect(e) => CliError::failed(format!("{role}: {e}")),
                    other => CliError::failed(other.to_string()),
                });
                break;
            }
        }
    }
    if let Some(err) = failure {
        if args.json {
            return Err(err.with_json(serde_json::json!({ "servers": reports })));
        }
        for r in &reports {
            print!("{}", render_text(r));
        }
        return Err(err);
    }
    if args.json {
        let doc = serde_json::json!({ "servers": reports });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| CliError::failed(e.to_string()))?
        );
    } else {
        for r in &reports {
            print!("{}", render_text(r));
        }
    }
    Ok(crate::cli::exit::OK)
}
