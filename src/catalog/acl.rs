//! Parsing `aclitem` text (`grantee=privs/grantor`) into [`AclItem`]s.
//!
//! We read ACLs as `text[]` rather than through `aclexplode()` because the item order matters:
//! pg_dump of the restored database lists grants in ACL order, so we must replay them in it.

use super::model::AclItem;

/// Parses one `aclitem` as PostgreSQL prints it; `None` if it is malformed.
pub fn parse_item(text: &str) -> Option<AclItem> {
    let (grantee, rest) = parse_name(text)?;
    let rest = rest.strip_prefix('=')?;
    let slash = rest.find('/')?;
    let privs = rest[..slash].to_string();
    let (grantor, tail) = parse_name(&rest[slash + 1..])?;
    if !tail.is_empty() {
        return None;
    }
    Some(AclItem {
        grantee,
        grantor,
        privs,
    })
}

/// Parses every item of an ACL array, skipping none: a malformed item is an error for the caller.
pub fn parse_acl(items: &[String]) -> Result<Vec<AclItem>, String> {
    items
        .iter()
        .map(|s| parse_item(s).ok_or_else(|| format!("unparsable aclitem {s:?}")))
        .collect()
}

/// A role name as `aclitem` prints it: bare, or double-quoted with `""` for a quote.
fn parse_name(s: &str) -> Option<(String, &str)> {
    if let Some(body) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if matches!(chars.peek(), Some((_, '"'))) {
                    chars.next();
                    out.push('"');
                } else {
                    return Some((out, &body[i + 1..]));
                }
            } else {
                out.push(c);
            }
        }
        None
    } else {
        let end = s.find(['=', '/']).unwrap_or(s.len());
        Some((s[..end].to_string(), &s[end..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_public_and_quoted_items() {
        let a = parse_item("postgres=arwdDxt/postgres").unwrap();
        assert_eq!(
            (a.grantee.as_str(), a.privs.as_str(), a.grantor.as_str()),
            ("postgres", "arwdDxt", "postgres")
        );
        let p = parse_item("=U/pg_database_owner").unwrap();
        assert_eq!((p.grantee.as_str(), p.privs.as_str()), ("", "U"));
        let q = parse_item("\"We \"\"ird\"=r*w/\"a=b\"").unwrap();
        assert_eq!(
            (q.grantee.as_str(), q.privs.as_str(), q.grantor.as_str()),
            ("We \"ird", "r*w", "a=b")
        );
        assert!(parse_item("nonsense").is_none());
    }
}
