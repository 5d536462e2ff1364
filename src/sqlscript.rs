//! Splitting a SQL script into statements, the way the server's lexer sees it: semicolons
//! inside string literals (`'...'`, `E'...'`), quoted identifiers, dollar-quoted bodies,
//! comments and parentheses (rule actions like `DO INSTEAD (a; b)`) do not end a statement.
//!
//! Needed to run post-data statements in parallel: our own generated scripts are the input,
//! but the splitter is written for any valid script and never panics on invalid ones.

/// Splits `script` into statements without their terminating `;`, trimmed; empty statements
/// (and comment-only ones) are dropped. Text after the last `;` is returned as a statement
/// too.
pub fn split_statements(script: &str) -> Vec<String> {
    let bytes = script.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut depth: i64 = 0;
    let mut meaningful = false;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = find_from(bytes, i, b"\n").map_or(bytes.len(), |p| p + 1);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(bytes, i);
                continue;
            }
            b'\'' => {
                // E'...' strings treat backslash as an escape.
                let escapes = i > 0
                    && matches!(bytes[i - 1], b'E' | b'e')
                    && !is_ident_char_before(bytes, i - 1);
                i = skip_quoted(bytes, i, b'\'', escapes);
                meaningful = true;
                continue;
            }
            b'"' => {
                i = skip_quoted(bytes, i, b'"', false);
                meaningful = true;
                continue;
            }
            b'$' => {
                if let Some(tag_end) = dollar_tag_end(bytes, i) {
                    let tag = &bytes[i..=tag_end];
                    i = find_from(bytes, tag_end + 1, tag).map_or(bytes.len(), |p| p + tag.len());
                    meaningful = true;
                    continue;
                }
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            b';' if depth <= 0 => {
                if meaningful {
                    out.push(script[start..i].trim().to_string());
                }
                start = i + 1;
                meaningful = false;
                depth = 0;
                i += 1;
                continue;
            }
            _ => {}
        }
        if !b.is_ascii_whitespace() {
            meaningful = true;
        }
        i += 1;
    }
    if meaningful {
        let rest = script[start..].trim();
        if !rest.is_empty() {
            out.push(rest.to_string());
        }
    }
    out
}

/// Index of the first occurrence of `needle` at or after `from`.
fn find_from(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn skip_block_comment(bytes: &[u8], mut i: usize) -> usize {
    // Block comments nest in PostgreSQL.
    let mut depth = 0usize;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            depth = depth.saturating_sub(1);
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// Skips a quoted token starting at `i` (the opening quote); doubled quotes stay inside.
fn skip_quoted(bytes: &[u8], mut i: usize, quote: u8, backslash_escapes: bool) -> usize {
    i += 1;
    while i < bytes.len() {
        let b = bytes[i];
        if backslash_escapes && b == b'\\' {
            i += 2;
            continue;
        }
        if b == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// True when the byte before `pos` continues an identifier (so `pos` is not a token start).
fn is_ident_char_before(bytes: &[u8], pos: usize) -> bool {
    pos > 0 && {
        let c = bytes[pos - 1];
        c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
    }
}

/// If a dollar-quote tag (`$$` or `$tag$`) starts at `i`, the index of its closing `$`.
/// A `$` inside an identifier (`a$b`) or a parameter (`$1`) is not a tag.
fn dollar_tag_end(bytes: &[u8], i: usize) -> Option<usize> {
    if is_ident_char_before(bytes, i) {
        return None;
    }
    let mut j = i + 1;
    while j < bytes.len() {
        let c = bytes[j];
        if c == b'$' {
            return Some(j);
        }
        let ok =
            c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 || (j > i + 1 && c.is_ascii_digit());
        if !ok {
            return None;
        }
        j += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_statements() {
        assert_eq!(
            split_statements("SELECT 1; SELECT 2;\n"),
            vec!["SELECT 1", "SELECT 2"]
        );
        assert_eq!(split_statements("SELECT 1"), vec!["SELECT 1"]);
        assert!(split_statements("  ;; -- only a comment\n").is_empty());
    }

    #[test]
    fn semicolons_inside_tokens_do_not_split() {
        let script = "COMMENT ON TABLE t IS 'a;b''c;';\n\
                      CREATE INDEX \"x;y\" ON t (a);\n\
                      CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n\
                      CREATE RULE r AS ON INSERT TO t DO INSTEAD (INSERT INTO u VALUES (1); INSERT INTO u VALUES (2));\n\
                      SELECT E'it\\'s; fine';\n\
                      /* a; /* nested; */ b; */ SELECT $$;$$;\n\
                      SELECT 1 -- trailing; comment\n;";
        let got = split_statements(script);
        assert_eq!(got.len(), 7, "{got:#?}");
        assert!(got[0].ends_with("'a;b''c;'"));
        assert!(got[3].contains("VALUES (2))"));
        assert!(got[4].starts_with("SELECT E'it"));
    }

    #[test]
    fn dollar_signs_that_are_not_quotes() {
        let got = split_statements("PREPARE p AS SELECT $1; SELECT a$b FROM t;");
        assert_eq!(got, vec!["PREPARE p AS SELECT $1", "SELECT a$b FROM t"]);
    }

    #[test]
    fn never_panics_on_fragments() {
        let parts = [
            "'", "\"", "$$", "$a$", "--", "/*", "*/", ";", "(", ")", "E'\\", "x", "\n", "é",
        ];
        for a in parts {
            for b in parts {
                for c in parts {
                    let s = format!("{a}{b}{c}");
                    let _ = split_statements(&s);
                }
            }
        }
    }
}
