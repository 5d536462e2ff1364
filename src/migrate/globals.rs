//! PLACEHOLDER while the roles module is written on branch `globals`; replaced at merge.
use crate::conn::Secret;
use thiserror::Error;
use tokio_postgres::Client;

#[derive(Debug, Error)]
#[error("globals: {0}")]
pub struct GlobalsError(String);

#[derive(Debug, Clone, Default)]
pub struct RoleOptions {
    pub excluded: Vec<String>,
}
#[derive(Debug, Clone, Default)]
pub struct Globals {}
#[derive(Debug, Clone)]
pub enum RoleStatus {
    Created,
    Exists,
    Excluded,
    Failed(String),
}
#[derive(Debug, Clone)]
pub struct RoleOutcome {
    pub name: String,
    pub status: RoleStatus,
    pub placeholder_password: Option<Secret>,
    pub warnings: Vec<String>,
}
pub async fn read_globals(_source: &Client) -> Result<Globals, GlobalsError> {
    Ok(Globals {})
}
pub async fn apply_roles(
    _target: &Client,
    _g: &Globals,
    _opts: &RoleOptions,
) -> Result<Vec<RoleOutcome>, GlobalsError> {
    Ok(Vec::new())
}
pub async fn database_settings_sql(
    _source: &Client,
    _source_db: &str,
    _target_db: &str,
) -> Result<Vec<String>, GlobalsError> {
    Ok(Vec::new())
}
