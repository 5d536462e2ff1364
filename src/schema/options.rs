//! What a rendering of the schema leaves in or out: shared by the renderer (`ddl`) and the
//! script builder (`script`).

/// Which sections to produce (`--section`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SectionFilter {
    #[default]
    All,
    PreData,
    PostData,
}

/// What to do with the source's subscriptions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubscriptionMode {
    /// Name each in [`SchemaScript::warnings`]: a clone, migrate or restore never creates
    /// them (a second subscriber would pull the same changes).
    #[default]
    Report,
    /// Script them in [`SchemaScript::subscriptions`] as pg_dump does (`schema`); one whose
    /// connection string the user may not read is reported instead.
    Script,
    /// Leave them out without a word (`--no-subscriptions`).
    Omit,
}

/// Options of `pgferry schema`.
#[derive(Clone, Debug, Default)]
pub struct DumpOptions {
    /// Leave out `ALTER … OWNER TO` (objects then belong to whoever runs the script).
    pub no_owner: bool,
    /// Leave out GRANT/REVOKE and ALTER DEFAULT PRIVILEGES.
    pub no_privileges: bool,
    pub section: SectionFilter,
    /// The tablespaces that exist where the script will run. `None`: keep every placement
    /// (the script is for an unknown server). `Some(list)`: placements in tablespaces not in
    /// the list are dropped (objects go to the database's default) and reported in
    /// [`SchemaScript::warnings`], since `SET default_tablespace` to a missing one fails.
    pub target_tablespaces: Option<Vec<String>>,
    /// Extensions not to create (`-xe`): their `CREATE EXTENSION` and comment are left out;
    /// objects that need them fail on the target, which is what the user asked to find out.
    pub excluded_extensions: Vec<String>,
    /// Also fill [`SchemaScript::post_data_units`] (the clone's parallel post-data), where
    /// PRIMARY KEY/UNIQUE constraints are built as unique indexes then attached `USING
    /// INDEX`. The text in `post_data` keeps the plain form either way.
    pub post_data_units: bool,
    /// Roles whose objects get no `ALTER … OWNER TO` (and whose default privileges are left
    /// out): the target user may not act as them, so the objects stay its own. Each such
    /// role is reported once by whoever decided it (`server::access`).
    pub owners_not_kept: Vec<String>,
    /// Replay grants made by another role than the owner under `SET ROLE` instead of `SET
    /// SESSION AUTHORIZATION` (which needs a superuser): for a target user that is not one.
    pub grants_by_set_role: bool,
    /// The major version the script will run on, where it changes what a new database starts
    /// with (the `public` schema's privileges). `None`: the source's, as pg_dump assumes.
    pub target_major: Option<u32>,
    pub subscriptions: SubscriptionMode,
}
