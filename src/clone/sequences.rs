//! Sequence values: read under the snapshot from each sequence relation (`last_value`,
//! `is_called` — the `pg_sequences` view hides `is_called`), set on the target with `setval`.
//! Identity and serial sequences are included: their values are data, as in pg_dump.

use super::CloneError;
use crate::quote::{qualified, quote_literal};
use tokio_postgres::Client;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceValue {
    pub schema: String,
    pub name: String,
    pub last_value: i64,
    pub is_called: bool,
}

/// How many sequences one query reads: a UNION ALL of this many `SELECT ... FROM seq`.
const BATCH: usize = 500;

/// Reads every user sequence's state (not those belonging to extensions) in the current
/// transaction of `client` (the caller has imported the snapshot).
pub async fn read(client: &Client) -> Result<Vec<SequenceValue>, CloneError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'S' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                               AND d.objid = c.oid AND d.deptype = 'e') \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| CloneError::source_failed("listing sequences", e))?;
    let names: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut out = Vec::with_capacity(names.len());
    for chunk in names.chunks(BATCH) {
        let sql = chunk
            .iter()
            .enumerate()
            .map(|(i, (s, n))| {
                format!("SELECT {i}, last_value, is_called FROM {}", qualified(s, n))
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let rows = client
            .query(&sql, &[])
            .await
            .map_err(|e| CloneError::source_failed("reading sequence values", e))?;
        for row in rows {
            let i: i32 = row.get(0);
            let Some((schema, name)) = usize::try_from(i).ok().and_then(|i| chunk.get(i)) else {
                continue;
            };
            out.push(SequenceValue {
                schema: schema.clone(),
                name: name.clone(),
                last_value: row.get(1),
                is_called: row.get(2),
            });
        }
    }
    Ok(out)
}

/// The statements that give the target's sequences these values.
pub fn setval_sql(values: &[SequenceValue]) -> String {
    values
        .iter()
        .map(|v| {
            format!(
                "SELECT pg_catalog.setval({}, {}, {});\n",
                quote_literal(&qualified(&v.schema, &v.name)),
                v.last_value,
                v.is_called
            )
        })
        .collect()
}

/// Sets the target's sequences.
pub async fn apply(target: &Client, values: &[SequenceValue]) -> Result<(), CloneError> {
    if values.is_empty() {
        return Ok(());
    }
    target
        .batch_execute(&setval_sql(values))
        .await
        .map_err(|e| CloneError::target_failed("setting sequence values", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setval_quotes_names() {
        let sql = setval_sql(&[SequenceValue {
            schema: "Shop".into(),
            name: "order's_id_seq".into(),
            last_value: -42,
            is_called: false,
        }]);
        assert_eq!(
            sql,
            "SELECT pg_catalog.setval('\"Shop\".\"order''s_id_seq\"', -42, false);\n"
        );
    }
}
