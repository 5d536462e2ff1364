//! Identifier and literal quoting with PostgreSQL's own rules (`quote_ident`, `quote_literal`).
//!
//! This is the only place in the crate that quotes, and a leaf module: SQL text (`ddl`), the
//! catalog reader, replication commands all use it. The keyword list is the union over the
//! versions we support (10..18): a word that is a keyword on a newer target must be quoted
//! there, and quoting it on an older one is harmless.
//!
//! The walsender's own grammar (replication commands: slot names, START_REPLICATION options)
//! has other keywords and no `E''` strings: [`quote_ident_always`] and
//! [`quote_literal_standard`] are for it.

/// Keywords that cannot be used as bare column names (PostgreSQL's "reserved",
/// "type_func_name" and "col_name" categories); unreserved keywords stay bare, as in
/// PostgreSQL's `quote_ident`. Sorted, for binary search.
const QUOTE_KEYWORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "json",
    "json_array",
    "json_arrayagg",
    "json_exists",
    "json_object",
    "json_objectagg",
    "json_query",
    "json_scalar",
    "json_serialize",
    "json_table",
    "json_value",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "merge_action",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// True if `word` must be quoted because of the keyword rule alone.
pub fn is_quoting_keyword(word: &str) -> bool {
    QUOTE_KEYWORDS.binary_search(&word).is_ok()
}

/// Quotes an identifier only when PostgreSQL would need it: anything other than lowercase
/// ASCII letters, digits and underscores (not starting with a digit), an empty name, or a
/// keyword outside the unreserved category.
pub fn quote_ident(name: &str) -> String {
    let mut chars = name.chars();
    let safe = match chars.next() {
        Some(c) if c.is_ascii_lowercase() || c == '_' => {
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }
        _ => false,
    };
    if safe && !is_quoting_keyword(name) {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `schema.name`, each part quoted as needed.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// A string literal as PostgreSQL's `quote_literal` writes it: single quotes doubled, and
/// with backslashes doubled behind an `E` prefix, so the text means the same whatever
/// `standard_conforming_strings` is.
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// `"name"` with embedded quotes doubled, always quoted: the replication grammar's keywords
/// (`LOGICAL`, `TEMPORARY`, ...) are not SQL's, so "only when needed" cannot be decided there.
pub fn quote_ident_always(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled and backslashes as they are: the walsender's scanner
/// reads standard-conforming literals and knows no `E''` form.
pub fn quote_literal_standard(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_table_is_sorted_for_binary_search() {
        assert!(QUOTE_KEYWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn plain_lowercase_names_stay_bare() {
        assert_eq!(quote_ident("film_actor"), "film_actor");
        assert_eq!(quote_ident("_x9"), "_x9");
        // Unreserved keywords are fine as names.
        assert_eq!(quote_ident("year"), "year");
        assert_eq!(quote_ident("name"), "name");
    }

    #[test]
    fn names_that_need_quotes() {
        assert_eq!(quote_ident("Film"), "\"Film\"");
        assert_eq!(quote_ident("my-table"), "\"my-table\"");
        assert_eq!(quote_ident("9lives"), "\"9lives\"");
        assert_eq!(quote_ident("a b"), "\"a b\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_ident("bıgınt"), "\"bıgınt\"");
        assert_eq!(quote_ident(""), "\"\"");
    }

    #[test]
    fn keywords_outside_unreserved_are_quoted() {
        for w in [
            "select",
            "user",
            "table",
            "integer",
            "left",
            "json_table",
            "between",
        ] {
            assert_eq!(quote_ident(w), format!("\"{w}\""), "{w}");
        }
    }

    #[test]
    fn literals_follow_quote_literal() {
        assert_eq!(quote_literal("abc"), "'abc'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(quote_literal(""), "''");
        assert_eq!(quote_literal("ünï"), "'ünï'");
    }

    #[test]
    fn qualified_names() {
        assert_eq!(qualified("public", "Order"), "public.\"Order\"");
    }
}
