//! `pgferry bench`: the measures, or with `--plan` the projection of a real clone; a table or
//! one JSON document; `--chart` writes the SVG. Interrupted (Ctrl-C, SIGTERM), it drops the
//! scratch schema on both servers before exiting 130.

use super::{conn_config, exit, BenchArgs, CliError};
use crate::bench::{self, chart, plan, BenchOptions};

pub async fn run(args: &BenchArgs) -> Result<u8, CliError> {
    let src = conn_config("source", &args.source.source)?;
    let dst = conn_config("target", &args.target.target)?;
    let jobs = args.jobs.or(std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2));
    let work = async {
        if args.plan {
            let opts = plan::PlanOptions {
                jobs,
                sample_bytes: args.sample_size,
                sampled_tables: 8,
                change_rate: args.change_rate,
            };
            let p = plan::run(&src, &dst, &opts).await?;
            Ok::<_, bench::BenchError>(Outcome::Plan(Box::new(p)))
        } else {
            let opts = BenchOptions {
                size: args.size,
                max_jobs: jobs,
                shape: args.shape,
            };
            Ok(Outcome::Rates(Box::new(
                bench::run(&src, &dst, &opts).await?,
            )))
        }
    };
    let outcome = tokio::select! {
        r = work => r.map_err(|e| CliError::failed(e.to_string()))?,
        _ = super::clone_cmd::wait_for_signal() => {
            // The running statements die with their sessions; the scratch tables go now.
            let left = if args.plan {
                bench::drop_scratch("target", &dst, true).await
            } else {
                bench::clean_up(&src, &dst, true).await
            };
            let mut message = "interrupted: the scratch schema pgferry_bench was dropped on both servers".to_owned();
            if !left.is_empty() {
                message = format!("interrupted: {}", left.join("; "));
            }
            return Err(CliError::interrupted(message));
        }
    };
    let (text, json, svg) = match &outcome {
        Outcome::Rates(r) => (
            bench::render(r),
            serde_json::to_value(r.as_ref()),
            chart::render(
                &format!("pgferry bench: MB/s by jobs ({:?} rows)", r.shape),
                &bench::chart_series(r),
                &[],
            ),
        ),
        Outcome::Plan(p) => (
            plan::render(p),
            serde_json::to_value(p.as_ref()),
            chart::render(
                &format!("pgferry bench --plan: database {}", p.database),
                &[],
                &p.phases,
            ),
        ),
    };
    if let Some(path) = &args.chart {
        std::fs::write(path, svg).map_err(|e| {
            CliError::failed(format!("cannot write the chart {}: {e}", path.display()))
        })?;
    }
    if args.json {
        let json =
            json.map_err(|e| CliError::failed(format!("cannot render the report as JSON: {e}")))?;
        println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    } else {
        print!("{text}");
    }
    Ok(exit::OK)
}

enum Outcome {
    Rates(Box<bench::Report>),
    Plan(Box<plan::Plan>),
}
