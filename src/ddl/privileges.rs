//! GRANT/REVOKE statements that turn an object's starting ACL into its actual one.
//!
//! Like pg_dump we compare item by item: a starting item that is gone (or changed) is
//! revoked, an actual item that is new (or changed) is granted, in ACL order so the restored
//! ACL lists its items in the same order. Grants made by someone other than the owner are
//! replayed under that role with SET SESSION AUTHORIZATION, which keeps the grantor.

use crate::catalog::{Acl, AclItem};
use crate::schema::DumpOptions;

use crate::quote::quote_ident;

fn priv_name(c: char) -> Option<&'static str> {
    Some(match c {
        'r' => "SELECT",
        'w' => "UPDATE",
        'a' => "INSERT",
        'd' => "DELETE",
        'D' => "TRUNCATE",
        'x' => "REFERENCES",
        't' => "TRIGGER",
        'X' => "EXECUTE",
        'U' => "USAGE",
        'C' => "CREATE",
        'c' => "CONNECT",
        'T' => "TEMPORARY",
        's' => "SET",
        'A' => "ALTER SYSTEM",
        'm' => "MAINTAIN",
        _ => return None,
    })
}

/// Splits `r*wa` into (privileges without grant option, privileges with it).
fn split_privs(privs: &str) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut plain = Vec::new();
    let mut with_grant = Vec::new();
    let chars: Vec<char> = privs.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let grant = chars.get(i + 1) == Some(&'*');
        if let Some(name) = priv_name(chars[i]) {
            if grant {
                with_grant.push(name);
            } else {
                plain.push(name);
            }
        }
        i += if grant { 2 } else { 1 };
    }
    (plain, with_grant)
}

fn grantee(name: &str) -> String {
    if name.is_empty() {
        "PUBLIC".to_string()
    } else {
        quote_ident(name)
    }
}

/// What a privilege statement applies to.
pub struct Target<'a> {
    /// `TABLE`, `SEQUENCE`, `FUNCTION`, `SCHEMA`, `TYPE`, … or, for default privileges,
    /// the plural `TABLES` etc.
    pub kind: &'a str,
    /// The object's name as it appears after the kind (already quoted), empty for default
    /// privileges.
    pub name: &'a str,
    /// For column privileges: the quoted column name.
    pub column: Option<&'a str>,
    /// The object's owner: grants by the owner need no session switch.
    pub owner: &'a str,
    /// Prefix for ALTER DEFAULT PRIVILEGES (`ALTER DEFAULT PRIVILEGES FOR ROLE x `), or empty.
    pub prefix: &'a str,
    /// Switch to another grantor with `SET ROLE` (a member may) rather than `SET SESSION
    /// AUTHORIZATION` (a superuser only).
    pub set_role: bool,
}

impl Target<'_> {
    fn on(&self, privs: &[&str]) -> String {
        let list = match self.column {
            Some(c) => privs
                .iter()
                .map(|p| format!("{p}({c})"))
                .collect::<Vec<_>>()
                .join(","),
            None => privs.join(","),
        };
        if self.name.is_empty() {
            format!("{list} ON {}", self.kind)
        } else {
            format!("{list} ON {} {}", self.kind, self.name)
        }
    }
}

/// The GRANT/REVOKE statements for the ACL of object `name` of `kind` (the whole object, no
/// prefix); empty with `--no-privileges` or when the object keeps its starting privileges.
pub(super) fn object_privileges(
    kind: &str,
    name: &str,
    owner: &str,
    acl: &Acl,
    opts: &DumpOptions,
) -> String {
    if opts.no_privileges {
        return String::new();
    }
    acl_statements(
        &Target {
            kind,
            name,
            column: None,
            owner,
            prefix: "",
            set_role: opts.grants_by_set_role,
        },
        acl,
    )
}

/// The statements for one ACL; empty if the object keeps its starting privileges.
pub fn acl_statements(target: &Target<'_>, acl: &Acl) -> String {
    let Some(actual) = &acl.actual else {
        return String::new();
    };
    let mut out = String::new();
    for b in &acl.baseline {
        if actual.contains(b) {
            continue;
        }
        let (plain, with_grant) = split_privs(&b.privs);
        let all: Vec<&str> = plain.iter().chain(with_grant.iter()).copied().collect();
        if all.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "{}REVOKE {} FROM {};\n",
            target.prefix,
            target.on(&all),
            grantee(&b.grantee)
        ));
    }
    for a in actual {
        if acl.baseline.contains(a) {
            continue;
        }
        out.push_str(&grant(target, a));
    }
    out
}

fn grant(target: &Target<'_>, item: &AclItem) -> String {
    let (plain, with_grant) = split_privs(&item.privs);
    let mut body = String::new();
    if !plain.is_empty() {
        body.push_str(&format!(
            "{}GRANT {} TO {};\n",
            target.prefix,
            target.on(&plain),
            grantee(&item.grantee)
        ));
    }
    if !with_grant.is_empty() {
        body.push_str(&format!(
            "{}GRANT {} TO {} WITH GRANT OPTION;\n",
            target.prefix,
            target.on(&with_grant),
            grantee(&item.grantee)
        ));
    }
    if item.grantor == target.owner || item.grantor.is_empty() || !target.prefix.is_empty() {
        body
    } else if target.set_role {
        format!(
            "SET ROLE {};\n{body}RESET ROLE;\n",
            quote_ident(&item.grantor)
        )
    } else {
        format!(
            "SET SESSION AUTHORIZATION {};\n{body}RESET SESSION AUTHORIZATION;\n",
            quote_ident(&item.grantor)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(grantee: &str, privs: &str, grantor: &str) -> AclItem {
        AclItem {
            grantee: grantee.into(),
            grantor: grantor.into(),
            privs: privs.into(),
        }
    }

    #[test]
    fn public_schema_usage_widened_to_create() {
        let acl = Acl {
            actual: Some(vec![
                item("postgres", "UC", "postgres"),
                item("", "UC", "postgres"),
            ]),
            baseline: vec![
                item("postgres", "UC", "postgres"),
                item("", "U", "postgres"),
            ],
        };
        let t = Target {
            kind: "SCHEMA",
            name: "public",
            column: None,
            owner: "postgres",
            prefix: "",
            set_role: false,
        };
        assert_eq!(
            acl_statements(&t, &acl),
            "REVOKE USAGE ON SCHEMA public FROM PUBLIC;\nGRANT USAGE,CREATE ON SCHEMA public TO PUBLIC;\n"
        );
    }

    #[test]
    fn grant_option_and_foreign_grantor() {
        let acl = Acl {
            actual: Some(vec![item("Bob", "r*w", "alice")]),
            baseline: vec![],
        };
        let t = Target {
            kind: "TABLE",
            name: "public.t",
            column: Some("c"),
            owner: "owner",
            prefix: "",
            set_role: false,
        };
        assert_eq!(
            acl_statements(&t, &acl),
            "SET SESSION AUTHORIZATION alice;\nGRANT UPDATE(c) ON TABLE public.t TO \"Bob\";\nGRANT SELECT(c) ON TABLE public.t TO \"Bob\" WITH GRANT OPTION;\nRESET SESSION AUTHORIZATION;\n"
        );
    }

    #[test]
    fn null_acl_means_nothing_to_do() {
        let t = Target {
            kind: "TABLE",
            name: "t",
            column: None,
            owner: "o",
            prefix: "",
            set_role: false,
        };
        assert_eq!(acl_statements(&t, &Acl::default()), "");
    }
}
