//! connect
use thiserror::Error;
#[derive(Debug, Error)]
#[error("todo")]
pub struct ConnectError;
pub struct Session;
pub struct TlsInfo;
pub async fn connect() {}
