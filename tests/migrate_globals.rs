//! Roles and database-level settings between two real clusters (roles are cluster-wide, so
//! every scenario gets its own target). Oracle: `pg_dumpall --roles-only` of source and target.

mod support;

use pgferry::localpg::{Cluster, ClusterOptions};
use pgferry::migrate::globals::{
    apply_roles, database_settings_sql, read_globals, RoleOptions, RoleOutcome, RolePassword,
    RoleStatus,
};
use std::process::Command;
use std::sync::OnceLock;
use support::{install, psql, try_psql_conninfo};
use tokio_postgres::{Client, NoTls};

/// Everything the source holds. The first statement creates the cluster's first user role.
const SOURCE_SETUP: &str = r#"
CREATE ROLE first_user LOGIN PASSWORD 'first-pw';
CREATE ROLE "App Owner" CREATEDB CREATEROLE NOINHERIT CONNECTION LIMIT 7
    VALID UNTIL '2031-02-03 04:05:06.5+00';
CREATE ROLE boss SUPERUSER LOGIN PASSWORD 'boss-pw';
CREATE ROLE repl REPLICATION BYPASSRLS LOGIN;
CREATE ROLE readers;
CREATE ROLE writers;
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5-pw';
RESET password_encryption;
CREATE ROLE "skip me" LOGIN;
CREATE ROLE forever LOGIN VALID UNTIL 'infinity';
CREATE ROLE reader LOGIN;
COMMENT ON ROLE readers IS 'people who read; it''s fine';
COMMENT ON ROLE "App Owner" IS 'owns the app';
GRANT readers TO first_user;
GRANT readers TO writers WITH ADMIN OPTION;
GRANT writers TO "App Owner" WITH ADMIN OPTION;
GRANT readers TO "skip me";
SET ROLE "App Owner";
GRANT writers TO md5user;
RESET ROLE;
ALTER ROLE first_user SET search_path = a, "b c";
ALTER ROLE first_user SET work_mem = '8MB';
ALTER ROLE "App Owner" SET statement_timeout = '5s';
ALTER ROLE md5user SET myapp.mode = 'it''s';
CREATE DATABASE "Shop-2";
ALTER DATABASE "Shop-2" SET search_path = shop, public;
ALTER DATABASE "Shop-2" SET work_mem = '3MB';
ALTER ROLE first_user IN DATABASE "Shop-2" SET work_mem = '16MB';
ALTER ROLE "skip me" IN DATABASE "Shop-2" SET work_mem = '1MB';
COMMENT ON DATABASE "Shop-2" IS 'the shop''s db';
"#;

/// The source cluster, set up once before any test reads it.
fn source() -> &'static Cluster {
    static S: OnceLock<Cluster> = OnceLock::new();
    S.get_or_init(|| {
        let c = new_cluster();
        psql(&c, "postgres", SOURCE_SETUP);
        c
    })
}

fn new_cluster() -> Cluster {
    Cluster::start(&install(), ClusterOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

async fn connect_as(cluster: &Cluster, user: &str, db: &str) -> Client {
    let conninfo = format!(
        "host={} port={} user={user} dbname='{db}'",
        cluster.host(),
        cluster.port()
    );
    let (client, conn) = tokio_postgres::connect(&conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect as {user}: {e}"));
    tokio::spawn(conn);
    client
}

/// `pg_dumpall --roles-only`, without what legitimately differs: comments, `\restrict` keys,
/// SET lines and the bootstrap superuser; sorted.
fn dumpall_roles(cluster: &Cluster) -> Vec<String> {
    let out = Command::new(support::tool(&install(), "pg_dumpall"))
        .args([
            "--roles-only",
            "-h",
            cluster.host(),
            "-p",
            &cluster.port().to_string(),
            "-U",
            "postgres",
        ])
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dumpall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("--")
                && !l.starts_with("\\restrict")
                && !l.starts_with("\\unrestrict")
                && !l.starts_with("SET ")
                && *l != "CREATE ROLE postgres;"
                && !l.starts_with("ALTER ROLE postgres WITH ")
        })
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn outcome<'a>(outcomes: &'a [RoleOutcome], name: &str) -> &'a RoleOutcome {
    outcomes
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no outcome for {name}: {outcomes:?}"))
}

/// Lets `user` in with a password only (`method`), everyone else by trust.
fn require_password(cluster: &Cluster, users: &[(&str, &str)]) {
    let mut lines: Vec<String> = users
        .iter()
        .map(|(u, method)| format!("host all {u} 127.0.0.1/32 {method}"))
        .collect();
    lines.push("host all all 127.0.0.1/32 trust".into());
    lines.push("local all all trust".into());
    cluster.reload_hba(&lines).unwrap();
}

fn login(cluster: &Cluster, user: &str, password: &str) -> Result<String, String> {
    let conninfo = format!(
        "host={} port={} user={user} dbname=postgres sslmode=disable",
        cluster.host(),
        cluster.port()
    );
    try_psql_conninfo(
        &install(),
        &conninfo,
        &[("PGPASSWORD", password)],
        "SELECT current_user",
    )
}

/// (role or "", setting) pairs of pg_db_role_setting for one database, sorted.
fn db_settings(cluster: &Cluster, db: &str) -> String {
    psql(
        cluster,
        "postgres",
        &format!(
            "SELECT coalesce(r.rolname, ''), c.item FROM pg_db_role_setting s \
             JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole \
             CROSS JOIN LATERAL unnest(s.setconfig) AS c(item) \
             WHERE d.datname = '{db}' ORDER BY 1, 2"
        ),
    )
}

#[tokio::test]
async fn superuser_target_gets_identical_roles() {
    let src = source();
    assert_eq!(
        psql(
            src,
            "postgres",
            "SELECT oid FROM pg_roles WHERE rolname = 'first_user'"
        ),
        "16384",
        "the fixture must hold the cluster's first user role"
    );
    let target = new_cluster();
    let s = connect_as(src, "postgres", "postgres").await;
    let t = connect_as(&target, "postgres", "postgres").await;

    let globals = read_globals(&s).await.unwrap();
    let first = globals
        .roles
        .iter()
        .find(|r| r.name == "first_user")
        .expect("the first user role (oid 16384) is read");
    assert!(matches!(first.password, RolePassword::Hash(_)));
    assert!(globals.roles.iter().all(|r| !r.name.starts_with("pg_")));

    let outcomes = apply_roles(&t, &globals, &RoleOptions::default())
        .await
        .unwrap();
    assert_eq!(outcomes.len(), globals.roles.len());
    for o in &outcomes {
        let want = if o.name == "postgres" {
            RoleStatus::Exists
        } else {
            RoleStatus::Created
        };
        assert_eq!(o.status, want, "{o:?}");
        assert!(o.warnings.is_empty(), "{o:?}");
        assert!(o.placeholder_password.is_none(), "{o:?}");
    }

    // Per-database settings and the comment, for a database renamed on the way.
    let stmts = database_settings_sql(&s, "Shop-2", "Shop-2", &RoleOptions::default())
        .await
        .unwrap();
    assert!(
        stmts.contains(&"COMMENT ON DATABASE \"Shop-2\" IS 'the shop''s db'".to_string()),
        "{stmts:?}"
    );
    psql(&target, "postgres", "CREATE DATABASE \"Shop-2\"");
    for st in &stmts {
        t.batch_execute(st)
            .await
            .unwrap_or_else(|e| panic!("{st}: {e}"));
    }
    let src_settings = db_settings(src, "Shop-2");
    assert!(
        src_settings.contains("first_user|work_mem=16MB"),
        "{src_settings}"
    );
    assert!(
        src_settings.contains("|search_path=shop, public"),
        "{src_settings}"
    );
    assert_eq!(db_settings(&target, "Shop-2"), src_settings);
    let comment =
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'Shop-2'";
    assert_eq!(
        psql(&target, "postgres", comment),
        psql(src, "postgres", comment)
    );

    // The oracle: pg_dumpall's view of roles, memberships (with admin option and grantor),
    // attributes, passwords, settings and comments.
    let source_dump = dumpall_roles(src);
    assert!(
        source_dump
            .iter()
            .any(|l| l.contains("GRANT writers TO md5user GRANTED BY \"App Owner\"")),
        "{source_dump:#?}"
    );
    assert!(
        source_dump
            .iter()
            .any(|l| l.contains("SET search_path TO 'a', 'b c'")),
        "{source_dump:#?}"
    );
    assert_eq!(dumpall_roles(&target), source_dump);

    // Hashes were copied verbatim: the source passwords work on the target.
    require_password(
        &target,
        &[("first_user", "scram-sha-256"), ("md5user", "md5")],
    );
    assert_eq!(
        login(&target, "first_user", "first-pw").unwrap(),
        "first_user"
    );
    assert_eq!(login(&target, "md5user", "md5-pw").unwrap(), "md5user");
    assert!(login(&target, "first_user", "wrong").is_err());

    // A second run finds everything in place and changes nothing.
    let again = apply_roles(&t, &globals, &RoleOptions::default())
        .await
        .unwrap();
    assert!(
        again.iter().all(|o| o.status == RoleStatus::Exists),
        "{again:?}"
    );
    assert_eq!(dumpall_roles(&target), source_dump);
    target.stop();
}

#[tokio::test]
async fn non_superuser_target_drops_attributes_and_keeps_existing_roles() {
    let src = source();
    let target = new_cluster();
    psql(
        &target,
        "postgres",
        "CREATE ROLE mgr CREATEROLE CREATEDB LOGIN; \
         CREATE ROLE writers LOGIN CONNECTION LIMIT 3;",
    );
    let s = connect_as(src, "postgres", "postgres").await;
    let t = connect_as(&target, "mgr", "postgres").await;
    let globals = read_globals(&s).await.unwrap();
    let opts = RoleOptions {
        excluded: vec!["skip me".into()],
    };
    let outcomes = apply_roles(&t, &globals, &opts).await.unwrap();

    assert_eq!(outcome(&outcomes, "skip me").status, RoleStatus::Excluded);
    assert_eq!(outcome(&outcomes, "writers").status, RoleStatus::Exists);
    assert_eq!(outcome(&outcomes, "postgres").status, RoleStatus::Exists);
    let boss = outcome(&outcomes, "boss");
    assert_eq!(boss.status, RoleStatus::Created);
    assert!(
        boss.warnings.iter().any(|w| w.contains("SUPERUSER")),
        "{boss:?}"
    );
    let repl = outcome(&outcomes, "repl");
    assert_eq!(repl.status, RoleStatus::Created);
    assert_eq!(repl.warnings.len(), 2, "{repl:?}");
    for name in ["first_user", "App Owner", "readers", "md5user", "forever"] {
        assert_eq!(
            outcome(&outcomes, name).status,
            RoleStatus::Created,
            "{outcomes:?}"
        );
    }

    assert_eq!(
        psql(
            &target,
            "postgres",
            "SELECT rolname, rolsuper, rolreplication, rolbypassrls, rolcanlogin FROM pg_roles \
             WHERE rolname IN ('boss', 'repl') ORDER BY 1"
        ),
        "boss|f|f|f|t\nrepl|f|f|f|t"
    );
    // The excluded role is absent; the existing one kept its own attributes.
    assert_eq!(
        psql(
            &target,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'skip me'"
        ),
        "0"
    );
    assert_eq!(
        psql(
            &target,
            "postgres",
            "SELECT rolcanlogin, rolconnlimit FROM pg_roles WHERE rolname = 'writers'"
        ),
        "t|3"
    );
    // Memberships granted by the CREATEROLE user, admin option kept.
    assert_eq!(
        psql(
            &target,
            "postgres",
            "SELECT r.rolname, u.rolname, m.admin_option FROM pg_auth_members m \
             JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
             WHERE u.rolname !~ '^pg_' ORDER BY 1, 2"
        ),
        "readers|first_user|f\nreaders|writers|t\nwriters|App Owner|t\nwriters|md5user|f"
    );
    // The hash travels without a superuser on the target too.
    require_password(&target, &[("boss", "scram-sha-256")]);
    assert_eq!(login(&target, "boss", "boss-pw").unwrap(), "boss");

    // The excluded role's per-database setting is left out.
    let stmts = database_settings_sql(&s, "Shop-2", "shop_copy", &opts)
        .await
        .unwrap();
    assert!(stmts.iter().all(|s| !s.contains("skip me")), "{stmts:?}");
    assert!(
        stmts.contains(
            &"ALTER ROLE first_user IN DATABASE shop_copy SET work_mem TO '16MB'".to_string()
        ),
        "{stmts:?}"
    );
    target.stop();
}

#[tokio::test]
async fn unreadable_hashes_become_placeholders() {
    let src = source();
    let target = new_cluster();
    // A non-superuser cannot read pg_authid, as on a managed source.
    let s = connect_as(src, "reader", "postgres").await;
    let t = connect_as(&target, "postgres", "postgres").await;
    let globals = read_globals(&s).await.unwrap();
    assert!(globals
        .roles
        .iter()
        .all(|r| r.password == RolePassword::Unreadable));
    let outcomes = apply_roles(&t, &globals, &RoleOptions::default())
        .await
        .unwrap();
    let first = outcome(&outcomes, "first_user");
    assert_eq!(first.status, RoleStatus::Created);
    let placeholder = first
        .placeholder_password
        .clone()
        .expect("a login role gets a placeholder");
    assert!(!format!("{outcomes:?}").contains(placeholder.expose()));
    // Roles that cannot log in get none.
    assert!(outcome(&outcomes, "readers").placeholder_password.is_none());
    let a = outcome(&outcomes, "boss")
        .placeholder_password
        .clone()
        .unwrap();
    assert_ne!(a, placeholder);

    // The server stored a SCRAM verifier, never the clear text, and it works.
    let stored = psql(
        &target,
        "postgres",
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'first_user'",
    );
    assert!(stored.starts_with("SCRAM-SHA-256$"), "{stored}");
    require_password(&target, &[("first_user", "scram-sha-256")]);
    assert_eq!(
        login(&target, "first_user", placeholder.expose()).unwrap(),
        "first_user"
    );
    assert!(login(&target, "first_user", "first-pw").is_err());
    target.stop();
}
