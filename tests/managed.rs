//! Migrations as managed-service users run them: neither side needs to be a superuser.
//!
//! The matrix: source user {superuser, REPLICATION + owner of the tables, REPLICATION +
//! aiven_extras (stand-in)} × target user {superuser, CREATEDB + CREATEROLE (Aiven's
//! `avnadmin`), the same with aiven_extras in the bootstrap database, the same with `GRANT SET
//! ON PARAMETER session_replication_role`}. Each cell runs `pgferry migrate` through the binary
//! while an application writes to the source (every write checked for errors): foreign keys
//! with ON DELETE CASCADE between tables written in the same transactions, a BEFORE trigger
//! that changes rows, an audit trigger that inserts into another table, a partitioned table
//! with partition moves, sequences and a large object. Then `pgferry stop` cuts over and:
//! `verify` finds data, sequences and large objects equal; no slot or publication is left on
//! the source; owners, table, database and large-object ACLs and trigger states equal the
//! source's; the schema (`pg_dump -s`) is the source's. The apply mode preflight announces is
//! the one each target user gets (replica role, aiven_extras, or the ordered mode).

mod support;

use pgferry::conn::{connect, ConnConfig};
use pgferry::localpg::{Cluster, ClusterOptions};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use support::{output_text as text, pgferry, psql};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SourceUser {
    Superuser,
    /// LOGIN REPLICATION, owner of the database and its tables.
    Owner,
    /// LOGIN REPLICATION, owner of nothing; aiven_extras in the database.
    AivenExtras,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetUser {
    Superuser,
    /// LOGIN CREATEDB CREATEROLE, owner of the bootstrap database `defaultdb`.
    Admin,
    /// The same, with aiven_extras created in `defaultdb`.
    AdminAivenExtras,
    /// The same, with SET on session_replication_role granted.
    AdminSetParameter,
}

impl TargetUser {
    /// What `--validate` must announce (ApplyMode::describe).
    fn expected_apply(self) -> &'static str {
        match self {
            TargetUser::Superuser | TargetUser::AdminSetParameter => {
                "apply: session_replication_role = replica\n"
            }
            TargetUser::AdminAivenExtras => {
                "apply: session_replication_role = replica through aiven_extras"
            }
            TargetUser::Admin => "apply: ordered apply without the replica role",
        }
    }
}

/// The shared source cluster (PostgreSQL of the default installation) with the roles every
/// cell uses.
fn source() -> &'static Cluster {
    source_of(None, "managed").unwrap_or_else(|| panic!("no default PostgreSQL installation"))
}

/// The shared source cluster of `major` (`None`: the default installation), made once per
/// test binary, or `None` (with a SKIPPED line naming `test`) when that major is missing.
fn source_of(major: Option<u32>, test: &str) -> Option<&'static Cluster> {
    static SOURCES: OnceLock<Mutex<std::collections::HashMap<Option<u32>, &'static Cluster>>> =
        OnceLock::new();
    let mut sources = SOURCES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(c) = sources.get(&major) {
        return Some(*c);
    }
    let cluster = match major {
        None => Cluster::start(&support::install(), ClusterOptions::default())
            .unwrap_or_else(|e| panic!("{e}")),
        Some(m) => support::start_major(m, test, ClusterOptions::default())?,
    };
    psql(
        &cluster,
        "postgres",
        "CREATE ROLE app_owner LOGIN REPLICATION;
         CREATE ROLE app_reader;
         CREATE ROLE aiven_src LOGIN REPLICATION;",
    );
    if cluster.install().major() >= 15 {
        psql(
            &cluster,
            "postgres",
            "GRANT SET ON PARAMETER log_statement TO app_owner;",
        );
    }
    let leaked: &'static Cluster = Box::leak(Box::new(cluster));
    sources.insert(major, leaked);
    Some(leaked)
}

/// The application's schema and rows, in a new database owned by `app_owner`.
fn setup_source_db(src: &Cluster, db: &str, user: SourceUser) {
    psql(
        src,
        "postgres",
        &format!(
            "CREATE DATABASE {db} OWNER app_owner;
             REVOKE ALL ON DATABASE {db} FROM PUBLIC;
             GRANT CONNECT ON DATABASE {db} TO app_reader, aiven_src;"
        ),
    );
    if user == SourceUser::AivenExtras {
        psql(src, db, "CREATE EXTENSION aiven_extras;");
    }
    psql(
        src,
        db,
        "SET ROLE app_owner;
         CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE orders (id bigserial PRIMARY KEY,
                              customer_id bigint NOT NULL REFERENCES customers ON DELETE CASCADE,
                              amount numeric NOT NULL);
         CREATE TABLE order_lines (id bigserial PRIMARY KEY,
                                   order_id bigint NOT NULL REFERENCES orders ON DELETE CASCADE,
                                   qty int NOT NULL, price numeric NOT NULL, total numeric);
         CREATE TABLE audit (id bigserial PRIMARY KEY, tbl text NOT NULL, op text NOT NULL,
                             row_id bigint);
         CREATE FUNCTION line_total() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN NEW.total := NEW.qty * NEW.price; RETURN NEW; END $$;
         CREATE TRIGGER line_total BEFORE INSERT OR UPDATE ON order_lines
           FOR EACH ROW EXECUTE FUNCTION line_total();
         CREATE FUNCTION audit_orders() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           INSERT INTO audit (tbl, op, row_id)
           VALUES (TG_TABLE_NAME, TG_OP, CASE TG_OP WHEN 'DELETE' THEN OLD.id ELSE NEW.id END);
           RETURN NULL;
         END $$;
         CREATE TRIGGER audit_orders AFTER INSERT OR UPDATE OR DELETE ON orders
           FOR EACH ROW EXECUTE FUNCTION audit_orders();
         CREATE TABLE events (id bigint NOT NULL, region int NOT NULL, payload text,
                              PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         CREATE TABLE events_1 PARTITION OF events FOR VALUES IN (1);
         CREATE TABLE events_2 PARTITION OF events FOR VALUES IN (2);
         CREATE SEQUENCE ticket_seq START 100 INCREMENT 5;
         INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 200) g;
         INSERT INTO orders (customer_id, amount) SELECT 1 + g % 200, g FROM generate_series(1, 400) g;
         INSERT INTO order_lines (order_id, qty, price) SELECT 1 + g % 400, g % 7, 2.5 FROM generate_series(1, 800) g;
         INSERT INTO events SELECT g, 1 + g % 2, 'e' || g FROM generate_series(1, 100) g;
         SELECT setval('ticket_seq', 150);
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_reader, aiven_src;
         GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO aiven_src;
         DO $$ DECLARE lo oid; BEGIN
           lo := lo_from_bytea(0, convert_to('a large object of the application', 'UTF8'));
           EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO aiven_src', lo);
         END $$;",
    );
}

/// Connection string for `user` on `cluster`'s database `db` (trust authentication).
fn uri_as(cluster: &Cluster, user: &str, db: &str) -> String {
    cluster
        .uri(db)
        .replace("postgres://postgres@", &format!("postgres://{user}@"))
}

fn source_uri(src: &Cluster, db: &str, user: SourceUser) -> String {
    match user {
        SourceUser::Superuser => src.uri(db),
        SourceUser::Owner => uri_as(src, "app_owner", db),
        SourceUser::AivenExtras => uri_as(src, "aiven_src", db),
    }
}

/// The target cluster prepared for `user`; returns the `-t` connection string.
fn setup_target(dst: &Cluster, user: TargetUser) -> String {
    if user == TargetUser::Superuser {
        return dst.uri("postgres");
    }
    psql(
        dst,
        "postgres",
        "CREATE ROLE avnadmin LOGIN CREATEDB CREATEROLE;
         CREATE DATABASE defaultdb OWNER avnadmin;",
    );
    let uri = uri_as(dst, "avnadmin", "defaultdb");
    match user {
        TargetUser::AdminAivenExtras => {
            support::psql_conninfo(dst.install(), &uri, &[], "CREATE EXTENSION aiven_extras;");
        }
        TargetUser::AdminSetParameter => {
            psql(
                dst,
                "postgres",
                "GRANT SET ON PARAMETER session_replication_role TO avnadmin;",
            );
        }
        _ => {}
    }
    uri
}

/// The application: transactions that write related tables together (customers, their
/// orders and lines; deletes that cascade; updates the BEFORE trigger rewrites; partition
/// moves; a sequence), every error kept.
struct Application {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Application {
    async fn start(uri: String) -> Application {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let cfg = ConnConfig::from_conn_str(&uri).unwrap();
        let session = connect(&cfg).await.unwrap();
        let (s, d, e) = (stop.clone(), done.clone(), errors.clone());
        let task = tokio::spawn(async move {
            let client = &session.client;
            let mut i: i64 = 0;
            while !s.load(Ordering::SeqCst) {
                i += 1;
                let sql = format!(
                    "BEGIN;
                     WITH c AS (INSERT INTO customers (name) VALUES ('live {i}') RETURNING id),
                          o AS (INSERT INTO orders (customer_id, amount)
                                SELECT id, x FROM c, generate_series(1, 2) x RETURNING id)
                     INSERT INTO order_lines (order_id, qty, price) SELECT id, 3, 1.5 FROM o;
                     UPDATE order_lines SET qty = qty + 1 WHERE id = (SELECT min(id) FROM order_lines) + {i} % 50;
                     {delete}
                     INSERT INTO events VALUES (1000 + {i}, 1, 'live');
                     UPDATE events SET region = 2 WHERE id = {i} AND region = 1;
                     SELECT nextval('ticket_seq');
                     COMMIT;",
                    delete = if i % 3 == 0 {
                        "DELETE FROM customers WHERE id = (SELECT min(id) FROM customers);"
                    } else {
                        ""
                    }
                );
                match client.batch_execute(&sql).await {
                    Ok(()) => {
                        d.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(err) => {
                        let _ = client.batch_execute("ROLLBACK").await;
                        e.lock().unwrap().push(err.to_string());
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Application {
            stop,
            done,
            errors,
            task,
        }
    }

    fn transactions(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let errors = self.errors.lock().unwrap().clone();
        (self.done.load(Ordering::SeqCst), errors)
    }
}

fn status(target_uri: &str) -> Option<Value> {
    let out = pgferry(&["status", "-t", target_uri, "--json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn db_status(target_uri: &str, db: &str) -> Option<String> {
    let s = status(target_uri)?;
    s["migration_detail"]
        .as_array()?
        .iter()
        .find(|d| d["dbname"] == db)
        .and_then(|d| d["status"].as_str().map(str::to_owned))
}

fn child_log(child: &mut Child) -> String {
    let mut log = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut log);
    }
    if let Some(mut o) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut o, &mut log);
    }
    log
}

/// Roles migrate announced as not kept ("objects owned by R on the source belong to ...").
fn announced_owners(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            let rest = l.split("objects owned by ").nth(1)?;
            Some(
                rest.split(" on the source")
                    .next()?
                    .trim_matches('"')
                    .to_owned(),
            )
        })
        .collect()
}

/// What must be equal on both sides: owners, ACLs, trigger states, large objects.
const OWNERS_AND_ACLS: &str = "
    SELECT 'db', pg_get_userbyid(datdba), coalesce(datacl::text, '') FROM pg_database
      WHERE datname = current_database()
    UNION ALL
    SELECT 'rel ' || c.relname, pg_get_userbyid(c.relowner), coalesce(c.relacl::text, '')
      FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'fn ' || p.proname, pg_get_userbyid(p.proowner), coalesce(p.proacl::text, '')
      FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'trigger ' || t.tgname, t.tgrelid::regclass::text, t.tgenabled::text
      FROM pg_trigger t WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'lo', pg_get_userbyid(lomowner), coalesce(lomacl::text, '') FROM pg_largeobject_metadata
    ORDER BY 1, 2";

/// One cell of the matrix; `majors`: (source, target) majors other than the default
/// installation's, for the cells that check other versions' rules.
async fn cell(source_user: SourceUser, target_user: TargetUser, majors: Option<(u32, u32)>) {
    let Some(cell) = CellSetup::start(source_user, target_user, majors) else {
        return;
    };
    cell.validate_says_live();
    let log = cell.migrate_under_writes().await;
    cell.assert_target_matches_source(&log);
}

/// A cell's clusters, database and users, ready to migrate.
struct CellSetup {
    test: String,
    src: &'static Cluster,
    dst: Cluster,
    db: String,
    src_uri: String,
    dst_uri: String,
    target_user: TargetUser,
    majors: Option<(u32, u32)>,
}

impl CellSetup {
    /// The clusters, the source database and both users; `None` (with a SKIPPED line) when
    /// this machine cannot run the cell.
    fn start(
        source_user: SourceUser,
        target_user: TargetUser,
        majors: Option<(u32, u32)>,
    ) -> Option<CellSetup> {
        let test = format!("{source_user:?}_to_{target_user:?}").to_lowercase();
        let target_major = majors.map(|(_, t)| t);
        if (source_user == SourceUser::AivenExtras || target_user == TargetUser::AdminAivenExtras)
            && support::aiven::install_stand_in(&support::install()).is_none()
        {
            support::skip(
            &test,
            "the server's extension directory is not writable (run as root) for the aiven_extras stand-in",
        );
            return None;
        }
        let dst = match target_major {
            None => support::start_cluster("target", ClusterOptions::default()),
            Some(major) => support::start_major(major, &test, ClusterOptions::default())?,
        };
        if target_user == TargetUser::AdminAivenExtras
            && support::aiven::install_stand_in(dst.install()).is_none()
        {
            support::skip(
                &test,
                "cannot install the aiven_extras stand-in on the target",
            );
            return None;
        }
        if target_user == TargetUser::AdminSetParameter && dst.install().major() < 15 {
            support::skip(&test, "parameter privileges need PostgreSQL 15+");
            return None;
        }
        let src = source_of(majors.map(|(s, _)| s), &test)?;
        static N: AtomicU64 = AtomicU64::new(0);
        let db = format!("m{}_{test}", N.fetch_add(1, Ordering::SeqCst));
        setup_source_db(src, &db, source_user);
        let src_uri = source_uri(src, &db, source_user);
        let dst_uri = setup_target(&dst, target_user);
        Some(CellSetup {
            test,
            src,
            dst,
            db,
            src_uri,
            dst_uri,
            target_user,
            majors,
        })
    }

    /// `pgferry migrate` of the cell's database between its users' URIs, with `extra`.
    fn migrate_command(&self, extra: &[&str]) -> Command {
        let mut cmd = support::pgferry_command(&[
            "migrate",
            "-s",
            &self.src_uri,
            "-t",
            &self.dst_uri,
            "--databases",
            &self.db,
        ]);
        cmd.args(extra);
        cmd
    }

    /// Preflight says which apply mode this target user gets, and passes.
    fn validate_says_live(&self) {
        let CellSetup {
            test,
            db,
            target_user,
            ..
        } = self;
        let out = self
            .migrate_command(&["--validate"])
            .output()
            .expect("run pgferry");
        let report = text(&out);
        assert!(out.status.success(), "{test}: validate failed:\n{report}");
        assert!(
            report.contains(target_user.expected_apply()),
            "{test}: expected `{}` in:\n{report}",
            target_user.expected_apply()
        );
        assert!(
            report.contains(&format!("{db}  replication")),
            "{test}: not live:\n{report}"
        );
    }

    /// Migrates while the application writes from before the start to after the copy; the
    /// user stops it at lag 0. Returns what migrate said.
    async fn migrate_under_writes(&self) -> String {
        let CellSetup {
            test,
            src,
            db,
            dst_uri,
            ..
        } = self;
        let app = Application::start(uri_as(src, "app_owner", db)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut child = self
            .migrate_command(&["-j", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pgferry");
        let deadline = Instant::now() + Duration::from_secs(180);
        let at_copy_end = loop {
            if db_status(dst_uri, db).as_deref() == Some("syncing") {
                break app.transactions();
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                panic!(
                    "{test}: never syncing; migrate said:\n{}",
                    child_log(&mut child)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Writes while streaming, then the application stops and the user cuts over.
        while app.transactions() < at_copy_end + 30 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (total, errors) = app.stop().await;
        assert!(
            errors.is_empty(),
            "{test}: the application got errors on the source: {errors:?}"
        );
        assert!(total > 30, "{test}: only {total} application transactions");
        let out = pgferry(&["stop", "-t", dst_uri, "--max-replication-lag", "0"]);
        assert!(out.status.success(), "{test}: stop: {}", text(&out));
        let deadline = Instant::now() + Duration::from_secs(180);
        let exit = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{test}: migrate did not end after stop:\n{}",
                    child_log(&mut child)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let log = child_log(&mut child);
        eprintln!("{test}: migrate said:\n{log}");
        assert!(exit.success(), "{test}: migrate failed:\n{log}");
        assert_eq!(
            db_status(dst_uri, db).as_deref(),
            Some("done"),
            "{test}:\n{log}"
        );
        log
    }

    /// Data, sequences, large objects, owners, privileges and schema as on the source, and
    /// nothing left there.
    fn assert_target_matches_source(&self, log: &str) {
        let CellSetup {
            test,
            src,
            dst,
            db,
            target_user,
            majors,
            ..
        } = self;
        let (src, dst, target_user, majors) = (*src, dst, *target_user, *majors);
        // Data, sequences and large objects equal.
        let out = pgferry(&["verify", "-s", &src.uri(db), "-t", &dst.uri(db)]);
        assert!(
            out.status.success(),
            "{test}: verify: {}\n{log}",
            text(&out)
        );
        // Nothing left on the source.
        assert_eq!(
            psql(
                src,
                db,
                // Slots are per cluster, and the other cells stream from this one meanwhile.
                "SELECT (SELECT count(*) FROM pg_replication_slots \
                     WHERE slot_name LIKE 'pgferry%' AND database = current_database()) || '/' || \
                    (SELECT count(*) FROM pg_publication)",
            ),
            "0/0",
            "{test}: slot or publication left on the source\n{log}"
        );
        // Owners and privileges as on the source, except where a difference was announced: a
        // role the target user may not act as leaves its objects to that user.
        let announced = announced_owners(log);
        let me = if target_user == TargetUser::Superuser {
            "postgres"
        } else {
            "avnadmin"
        };
        assert!(
            announced.iter().all(|r| r == "postgres"),
            "{test}: only the source's superuser may be announced: {announced:?}\n{log}"
        );
        let expected: Vec<String> = psql(src, db, OWNERS_AND_ACLS)
            .lines()
            .map(|l| {
                let mut cols: Vec<&str> = l.split('|').collect();
                if cols.len() > 1 && announced.iter().any(|r| r == cols[1]) {
                    cols[1] = me;
                }
                cols.join("|")
            })
            .collect();
        // From 17 an owner holds MAINTAIN too (what `pg_dump | psql` gives there as well).
        let newer_maintain = src.install().major() < 17 && dst.install().major() >= 17;
        let got: Vec<String> = psql(dst, db, OWNERS_AND_ACLS)
            .lines()
            .map(|l| {
                if newer_maintain {
                    l.replace("arwdDxtm/", "arwdDxt/")
                } else {
                    l.to_owned()
                }
            })
            .collect();
        assert_eq!(got, expected, "{test}: owners/ACLs differ\n{log}");
        // The audit rows came from the source only (the target's trigger did not add its own).
        assert_eq!(
            psql(dst, db, "SELECT count(*), max(id) FROM audit"),
            psql(src, db, "SELECT count(*), max(id) FROM audit"),
        );
        // The schema itself (same major only: one pg_dump reads both).
        if majors.is_none_or(|(s, t)| s == t) {
            let dump = |c: &Cluster| -> Vec<String> {
                support::fidelity::pg_dump_schema_with(c, db, &["-N", "pgferry"])
                    .into_iter()
                    .filter(|l| !l.contains("PUBLICATION"))
                    .collect()
            };
            let a: Vec<String> = dump(src)
                .into_iter()
                .map(|l| {
                    announced.iter().fold(l, |l, r| {
                        l.replace(&format!(" OWNER TO {r};"), &format!(" OWNER TO {me};"))
                    })
                })
                .collect();
            let b = dump(dst);
            assert!(
                a == b,
                "{test}: schema differs: {:?}",
                support::fidelity::first_diff(&a, &b)
            );
        }
        // Parameter privileges: reproduced by a superuser target, reported by the others.
        if dst.install().major() >= 15 && src.install().major() >= 15 {
            let acl =
                "SELECT parname, paracl FROM pg_parameter_acl WHERE parname = 'log_statement'";
            if target_user == TargetUser::Superuser {
                assert_eq!(psql(dst, "postgres", acl), psql(src, "postgres", acl));
            } else {
                assert!(
                    log.contains("ON PARAMETER log_statement"),
                    "{test}: parameter privilege neither reproduced nor reported:\n{log}"
                );
            }
        }
    }
}

macro_rules! cells {
    ($($name:ident: $s:ident, $t:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            cell(SourceUser::$s, TargetUser::$t, None).await;
        }
    )*};
}

cells! {
    superuser_to_superuser: Superuser, Superuser;
    superuser_to_admin: Superuser, Admin;
    superuser_to_admin_with_aiven_extras: Superuser, AdminAivenExtras;
    superuser_to_admin_with_set_parameter: Superuser, AdminSetParameter;
    owner_to_superuser: Owner, Superuser;
    owner_to_admin: Owner, Admin;
    owner_to_admin_with_aiven_extras: Owner, AdminAivenExtras;
    owner_to_admin_with_set_parameter: Owner, AdminSetParameter;
    aiven_extras_to_superuser: AivenExtras, Superuser;
    aiven_extras_to_admin: AivenExtras, Admin;
    aiven_extras_to_admin_with_aiven_extras: AivenExtras, AdminAivenExtras;
    aiven_extras_to_admin_with_set_parameter: AivenExtras, AdminSetParameter;
}

/// PostgreSQL 16 changed what CREATEROLE may grant: the admin user of a 16 or 18 target
/// holds ADMIN on the roles it creates and must grant itself SET and INHERIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_to_admin_on_16() {
    cell(SourceUser::Owner, TargetUser::Admin, Some((15, 16))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_to_admin_on_17() {
    cell(SourceUser::Owner, TargetUser::Admin, Some((17, 17))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_to_admin_with_set_parameter_on_18() {
    cell(
        SourceUser::Owner,
        TargetUser::AdminSetParameter,
        Some((15, 18)),
    )
    .await;
}

/// Up to 15, CREATEROLE may grant membership in any role that is not a superuser; no
/// parameter privileges exist on 14, so this admin gets the ordered apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_to_admin_on_14() {
    cell(SourceUser::Owner, TargetUser::Admin, Some((14, 14))).await;
}

/// `clone --follow` (one database, roles made beforehand) into the admin user of a managed
/// service: the owners are kept by the membership rule, the ordered apply streams the
/// application's writes, the cutover sets the triggers back, and the target equals the
/// source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_follow_into_admin_target() {
    let src = source();
    let db = "clone_follow_admin";
    setup_source_db(src, db, SourceUser::Owner);
    let dst = Cluster::start(&support::install(), ClusterOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    setup_target(&dst, TargetUser::Admin);
    // clone does not create roles: the service's admin made them (as on Aiven's console).
    psql(
        &dst,
        "postgres",
        "CREATE ROLE app_owner; CREATE ROLE app_reader; CREATE ROLE aiven_src;",
    );
    let (src_uri, dst_uri) = (uri_as(src, "app_owner", db), uri_as(&dst, "avnadmin", db));
    let app = Application::start(uri_as(src, "app_owner", db)).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args([
            "-v", "clone", "--follow", "-s", &src_uri, "-t", &dst_uri, "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgferry");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let streaming = support::try_psql_conninfo(
            dst.install(),
            &dst.uri(db),
            &[],
            "SELECT count(*) FROM pgferry.apply_progress",
        );
        if streaming.as_deref() == Ok("1") {
            break;
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            panic!("never streaming:\n{}", child_log(&mut child));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let streamed_from = app.transactions();
    while app.transactions() < streamed_from + 30 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, errors) = app.stop().await;
    assert!(errors.is_empty(), "the application got errors: {errors:?}");
    // Ctrl-C keeps the slot; the same command with the cutover flags drains and cuts over.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let first = child.wait_with_output().unwrap();
    let first_log = text(&first);
    assert!(
        first_log.contains("ordered apply"),
        "the ordered apply was not used:\n{first_log}"
    );
    let out = pgferry(&[
        "clone",
        "--follow",
        "-s",
        &src_uri,
        "-t",
        &dst_uri,
        "--max-replication-lag",
        "0",
        "--stop-replication",
    ]);
    assert!(out.status.success(), "cutover: {}\n{first_log}", text(&out));
    let out = pgferry(&["verify", "-s", &src.uri(db), "-t", &dst.uri(db)]);
    assert!(out.status.success(), "verify: {}", text(&out));
    assert_eq!(
        psql(&dst, db, OWNERS_AND_ACLS),
        psql(src, db, OWNERS_AND_ACLS),
        "owners/ACLs/trigger states differ"
    );
}

/// The snapshot method into the admin user of a managed service, with pg_restore's
/// `--no-owner --no-privileges`: everything belongs to the target user, no GRANT or REVOKE
/// is made (the database's own ACL included), no membership is granted, and the data is the
/// source's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_method_with_no_owner_and_no_privileges() {
    let src = source();
    let db = "dump_no_owner";
    setup_source_db(src, db, SourceUser::Owner);
    let dst = Cluster::start(&support::install(), ClusterOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let dst_uri = setup_target(&dst, TargetUser::Admin);
    let src_uri = uri_as(src, "app_owner", db);
    let out = pgferry(&[
        "migrate",
        "-s",
        &src_uri,
        "-t",
        &dst_uri,
        "--databases",
        db,
        "--force-method",
        "dump",
        "--no-owner",
        "--no-privileges",
    ]);
    let log = text(&out);
    assert!(out.status.success(), "migrate: {log}");
    assert!(log.contains("--no-owner"), "not announced: {log}");
    let out = pgferry(&["verify", "-s", &src.uri(db), "-t", &dst.uri(db)]);
    assert!(
        text(&out).contains("owner differs (app_owner on source, avnadmin on target)"),
        "verify did not see the large object's owner: {}",
        text(&out)
    );
    let out = pgferry(&[
        "verify",
        "--no-owner",
        "-s",
        &src.uri(db),
        "-t",
        &dst.uri(db),
    ]);
    assert!(out.status.success(), "verify: {}", text(&out));
    assert_eq!(
        psql(
            &dst,
            db,
            "SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') || '/' || count(relacl) \
             FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        ),
        "avnadmin/0"
    );
    assert_eq!(
        psql(
            &dst,
            db,
            "SELECT pg_get_userbyid(datdba) || '/' || (datacl IS NULL) FROM pg_database \
             WHERE datname = current_database()"
        ),
        "avnadmin/true"
    );
    // No membership was needed, so none was granted.
    assert_eq!(
        psql(
            &dst,
            "postgres",
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member \
             WHERE r.rolname = 'avnadmin' AND pg_get_userbyid(m.grantor) = 'avnadmin'"
        ),
        "0"
    );
    // The triggers are there, enabled as on the source.
    assert_eq!(
        psql(&dst, db, "SELECT string_agg(tgname::text || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger WHERE NOT tgisinternal"),
        psql(src, db, "SELECT string_agg(tgname::text || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger WHERE NOT tgisinternal"),
    );
}
