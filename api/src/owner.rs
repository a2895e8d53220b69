//! Owner tags: what esprit-ike writes in an SA's `owner` (`esprit-ike/<instance>/<conn>/<child>`,
//! decision 0016), so a restarted esprit-ike finds its earlier run's SAs and the dataplane can
//! name an SA's connection and child in its metrics.

/// What every owner tag of esprit-ike starts with.
pub const OWNER_PREFIX: &str = "esprit-ike";

/// Percent-encodes what is not printable ASCII, and `/`, `%`, so the tag splits unambiguously.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'/' && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The owner tag of an SA of `conn`'s child `child`, installed by run `instance`.
pub fn owner_tag(instance: &str, conn: &str, child: &str) -> String {
    format!(
        "{OWNER_PREFIX}/{}/{}/{}",
        encode(instance),
        encode(conn),
        encode(child)
    )
}

/// An owner tag taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The esprit-ike run that installed the SA.
    pub instance: String,
    /// Its connection.
    pub conn: String,
    /// Its child.
    pub child: String,
}

/// Reads an esprit-ike owner tag; `None` for anything else (manual SAs, other tools).
pub fn parse_owner(tag: &str) -> Option<Owner> {
    let mut parts = tag.split('/');
    if parts.next()? != OWNER_PREFIX {
        return None;
    }
    let instance = decode(parts.next()?)?;
    let conn = decode(parts.next()?)?;
    let child = decode(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    Some(Owner {
        instance,
        conn,
        child,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_roundtrip_with_awkward_names() {
        let t = owner_tag("00ff", "site b/1%", "net");
        assert_eq!(t, "esprit-ike/00ff/site%20b%2F1%25/net");
        assert_eq!(
            parse_owner(&t),
            Some(Owner {
                instance: "00ff".into(),
                conn: "site b/1%".into(),
                child: "net".into()
            })
        );
        assert_eq!(parse_owner("manual"), None);
        assert_eq!(parse_owner("esprit-ike/a/b"), None);
        assert_eq!(parse_owner("esprit-ike/a/b/c/d"), None);
        assert_eq!(parse_owner("esprit-ike/a/%zz/c"), None);
    }
}
