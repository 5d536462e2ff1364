//! The row shapes `pgferry bench` generates: what matters for copy speed is the number of
//! rows per byte (per-row costs on both servers and in pgferry), the column types (binary
//! send/receive costs, numeric being the dearest) and whether values are TOASTed.

use clap::ValueEnum;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// bigint, integer, double precision, timestamptz and a 64-character text: ~100 bytes.
    Mixed,
    /// Two integers: ~30 bytes per row, per-row costs dominate.
    Narrow,
    /// Twenty columns of integers and short texts: ~400 bytes per row.
    Wide,
    /// One 4 kB text per row, stored compressed out of line (TOAST).
    Toast,
    /// Six numeric(18,6) columns: the costliest send/receive functions.
    Numeric,
}

impl Shape {
    /// Column definitions of the scratch table `t`.
    pub fn columns(self) -> String {
        match self {
            Shape::Mixed => "id bigint NOT NULL, k integer NOT NULL, v double precision NOT NULL, \
                             ts timestamptz NOT NULL, payload text NOT NULL"
                .into(),
            Shape::Narrow => "id bigint NOT NULL, k integer NOT NULL".into(),
            Shape::Wide => {
                let mut cols = vec!["id bigint NOT NULL".to_owned()];
                for i in 1..20 {
                    cols.push(if i % 2 == 0 {
                        format!("c{i} integer")
                    } else {
                        format!("c{i} text")
                    });
                }
                cols.join(", ")
            }
            Shape::Toast => "id bigint NOT NULL, doc text NOT NULL".into(),
            Shape::Numeric => (1..=6)
                .map(|i| format!("n{i} numeric(18,6)"))
                .chain(std::iter::once("id bigint NOT NULL".to_owned()))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// The SELECT list producing row `i` (an int8 named `i` in scope), in column order.
    pub fn select(self) -> String {
        match self {
            Shape::Mixed => "i, (i % 1000)::int, (i / 7.0)::float8, \
                             timestamptz '2024-01-01' + i * interval '1 second', \
                             md5(i::text) || md5((i + 1)::text)"
                .into(),
            Shape::Narrow => "i, (i % 1000)::int".into(),
            Shape::Wide => {
                let mut cols = vec!["i".to_owned()];
                for c in 1..20 {
                    cols.push(if c % 2 == 0 {
                        format!("(i * {c})::int")
                    } else {
                        format!("substr(md5((i + {c})::text), 1, 16)")
                    });
                }
                cols.join(", ")
            }
            Shape::Toast => "i, repeat(md5(i::text), 128)".into(),
            Shape::Numeric => (1..=6)
                .map(|c| format!("(i * {c}.123457 / 7)::numeric(18,6)"))
                .chain(std::iter::once("i".to_owned()))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}
