//! `dump_schema`: the database's DDL as two scripts, pre-data and post-data — the pipeline
//! [`crate::catalog`] → [`crate::schema::Model`] → [`crate::schema::order`] → [`crate::ddl`]
//! text. Above both `schema` and `ddl`, so that neither imports the other's caller.

use tokio_postgres::Client;

use crate::catalog::{CatalogError, ReadOptions};
use crate::ddl::render_object;

use crate::schema::{
    order, DumpOptions, Item, Model, ObjectKind, Section, SectionFilter, SubscriptionMode,
};

mod parallel;
use parallel::unit;
pub use parallel::{is_session_setting, PostDataUnit};

/// The generated DDL. Each part starts with the session settings it needs, so either can be
/// applied on its own (e.g. with `psql -1`); a section that was not requested is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemaScript {
    pub pre_data: String,
    pub post_data: String,
    /// The post-data objects as units for a parallel builder, in script order; filled only
    /// with [`DumpOptions::post_data_units`]. They need [`PREAMBLE`] first.
    pub post_data_units: Vec<PostDataUnit>,
    /// The source's publications, kept out of pre-/post-data on purpose: a migration sets up
    /// its own, and copying the source's would make the target publish as well. Empty when
    /// there are none; it needs the post-data objects (and roles) to exist.
    pub publications: String,
    /// The source's subscriptions, with [`SubscriptionMode::Script`] only (created disabled,
    /// `connect = false`). Empty when there are none.
    pub subscriptions: String,
    /// `REFRESH MATERIALIZED VIEW` for the materialized views the source has populated, in
    /// dependency order: pg_dump runs these after loading the data (they are created WITH
    /// NO DATA in pre-data). Empty when there are none.
    pub refresh_matviews: String,
    /// `SECURITY LABEL` statements, apart because they need the same label provider loaded
    /// on the target. Empty when there are none.
    pub security_labels: String,
    /// Objects emitted before one of their dependencies because of a dependency cycle.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Settings that make the script mean the same on any server: no timeouts, names always
/// qualified (empty search_path), function bodies not validated before the objects they
/// use exist.
pub const PREAMBLE: &str = "SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;
SET default_tablespace = '';

";

/// Reads the catalog of the database `client` is connected to and renders its DDL.
///
/// Runs inside whatever transaction the caller has open; use
/// [`crate::catalog::begin_snapshot_read`] first to read under an exported snapshot. If no
/// transaction is open, each catalog query sees its own snapshot, which is only safe when
/// no DDL runs concurrently.
pub async fn dump_schema(client: &Client, opts: &DumpOptions) -> Result<SchemaScript, DumpError> {
    dump_schema_parallel(&[client], opts).await
}

/// [`dump_schema`] reading over several sessions on one snapshot (see
/// [`crate::catalog::read_catalog_parallel`]).
pub async fn dump_schema_parallel(
    clients: &[&Client],
    opts: &DumpOptions,
) -> Result<SchemaScript, DumpError> {
    let catalog = crate::catalog::read_catalog_parallel(clients, &ReadOptions::default()).await?;
    let started = std::time::Instant::now();
    let model = Model::build(catalog);
    tracing::debug!("schema model built in {:.2?}", started.elapsed());
    let started = std::time::Instant::now();
    let script = render_script(model, opts);
    tracing::debug!("schema ordered and rendered in {:.2?}", started.elapsed());
    Ok(script)
}

/// The pure half of [`dump_schema`]: model → ordered script.
pub fn render_script(model: Model, opts: &DumpOptions) -> SchemaScript {
    let t = std::time::Instant::now();
    let (sequence, forced) = order(&model.objects);
    tracing::trace!("schema ordered in {:.2?}", t.elapsed());
    let mut pre = String::from(PREAMBLE);
    let mut post = String::from(PREAMBLE);
    let mut publications = String::new();
    let mut refresh = String::new();
    let mut units = Vec::new();
    let texts = render_all(&model, &sequence, opts);
    for (i, text) in sequence.into_iter().zip(texts) {
        let o = &model.objects[i];
        if let Item::Extension(e) = o.item {
            let name = &model.catalog.extensions[e].name;
            if opts.excluded_extensions.iter().any(|x| x == name) {
                continue;
            }
        }
        if let (ObjectKind::MatView, Item::Relation(r)) = (o.kind, o.item) {
            let r = &model.catalog.relations[r];
            if r.populated {
                refresh.push_str(&format!(
                    "REFRESH MATERIALIZED VIEW {};\n",
                    crate::quote::qualified(&r.schema, &r.name)
                ));
            }
        }
        if text.is_empty() {
            continue;
        }
        if opts.post_data_units
            && o.section == Section::PostData
            && o.kind != ObjectKind::Publication
            && opts.section != SectionFilter::PreData
        {
            units.extend(unit(&model, o, opts));
        }
        let target = match (o.kind, o.section) {
            (ObjectKind::Publication, _) => &mut publications,
            (_, Section::PreData) => &mut pre,
            (_, Section::PostData) => &mut post,
        };
        target.push_str(&text);
        target.push('\n');
    }
    let mut missing: Vec<&str> = match &opts.target_tablespaces {
        Some(available) => model
            .objects
            .iter()
            .filter_map(|o| crate::ddl::tablespace_of(&model, o.item))
            .filter(|ts| !available.iter().any(|a| a == ts))
            .collect(),
        None => Vec::new(),
    };
    missing.sort_unstable();
    missing.dedup();
    let tablespace_warnings = missing.into_iter().map(|ts| {
        format!(
            "tablespace {ts} does not exist on the target: objects stored in it on the source are created in the database's default tablespace"
        )
    });
    let mut subscriptions = String::new();
    let mut subscription_warnings = Vec::new();
    for sub in &model.catalog.extras.subscriptions {
        match opts.subscriptions {
            SubscriptionMode::Omit => {}
            SubscriptionMode::Report => subscription_warnings.push(format!(
                "subscription {} is not reproduced (pgferry does not create subscriptions): \
                 create it on the target yourself if the target must subscribe too",
                sub.name
            )),
            SubscriptionMode::Script => match crate::ddl::extras::subscription(sub, opts) {
                Some(text) => {
                    subscriptions.push_str(&text);
                    subscriptions.push('\n');
                }
                None => subscription_warnings.push(format!(
                    "subscription {} is not in the script: its connection string is readable \
                     only by a superuser (connect as one, or leave subscriptions out with \
                     --no-subscriptions)",
                    sub.name
                )),
            },
        }
    }
    let warnings = forced
        .into_iter()
        .map(|i| {
            let o = &model.objects[i];
            format!(
                "dependency cycle: {:?} {}.{} emitted before some of its dependencies",
                o.kind,
                o.schema.as_deref().unwrap_or(""),
                o.name
            )
        })
        .chain(tablespace_warnings)
        .chain(subscription_warnings)
        .collect();
    let script = SchemaScript {
        pre_data: if opts.section == SectionFilter::PostData {
            String::new()
        } else {
            pre
        },
        post_data: if opts.section == SectionFilter::PreData {
            String::new()
        } else {
            post
        },
        post_data_units: units,
        publications: if publications.is_empty() {
            publications
        } else {
            format!("{PREAMBLE}{publications}")
        },
        subscriptions: if subscriptions.is_empty() || opts.section == SectionFilter::PreData {
            String::new()
        } else {
            format!("{PREAMBLE}{subscriptions}")
        },
        security_labels: crate::ddl::extras::security_labels(&model.catalog.extras.security_labels),
        refresh_matviews: if refresh.is_empty() {
            refresh
        } else {
            format!("{PREAMBLE}{refresh}")
        },
        warnings,
    };
    // Freeing a model of 100,000 tables (a million small allocations) takes a noticeable
    // moment that nobody needs to wait for.
    drop_in_background(model);
    script
}

/// Each object's DDL, in `sequence` order, rendered on as many threads as the machine has
/// (up to 4): rendering only reads the model, and on 100,000 tables it is most of the time
/// spent after the catalog read.
fn render_all(model: &Model, sequence: &[usize], opts: &DumpOptions) -> Vec<String> {
    const MIN_PER_THREAD: usize = 5_000;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(sequence.len() / MIN_PER_THREAD)
        .max(1);
    let render = |part: &[usize]| -> Vec<String> {
        part.iter()
            .map(|&i| render_object(model, &model.objects[i], opts))
            .collect()
    };
    if threads == 1 {
        return render(sequence);
    }
    let chunk = sequence.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = sequence
            .chunks(chunk)
            .map(|part| scope.spawn(move || render(part)))
            .collect();
        let mut out = Vec::with_capacity(sequence.len());
        for w in workers {
            match w.join() {
                Ok(texts) => out.extend(texts),
                // A renderer panicked: the same panic, on this thread.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

/// Drops `value` on a thread of its own; when no thread can be started, the closure that
/// holds it is dropped here instead.
fn drop_in_background<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("pgferry-drop".into())
        .spawn(move || drop(value));
}
