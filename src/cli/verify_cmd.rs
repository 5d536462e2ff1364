//! `pgferry verify`: compare source and target; exit 1 when anything differs.

use super::{conn_config, exit, CliError, VerifyArgs};
use crate::verify::{render_text, verify, VerifyError, VerifyOptions};

pub async fn run(args: &VerifyArgs) -> Result<u8, CliError> {
    let src = conn_config("source", &args.source.source)?;
    let dst = conn_config("target", &args.target.target)?;
    let mut opts = VerifyOptions {
        tables: args.tables.clone(),
        ignore_owners: args.no_owner,
        ..VerifyOptions::default()
    };
    opts.jobs = args.jobs.or(opts.jobs);
    let report = verify(&src, &dst, &opts).await.map_err(|e| match e {
        // A name that matches nothing is a usage error, as for migrate and dump.
        e @ VerifyError::UnknownTables(_) => CliError::usage(e.to_string()),
        e => CliError::failed(e.to_string()),
    })?;
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::failed(format!("cannot render the report as JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", render_text(&report));
    }
    Ok(if report.is_clean() {
        exit::OK
    } else {
        exit::FAILED
    })
}
