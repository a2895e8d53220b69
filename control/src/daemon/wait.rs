//! `espctl … --wait`: following an exchange that esprit-ike started until it succeeds, fails or
//! runs out of time, by reading `ike.list` (the stable ids of [`super::control::ike_id`] and
//! [`super::control::child_id`]).

use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

use super::control::{call, ControlRequest};

/// What to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// The IKE SA with this id established, with a child (of this name, or any).
    Up {
        /// The IKE SA's id (`initiate` answers with it).
        ike_sa: String,
        /// The child that must be installed, if one was asked for.
        child: Option<String>,
    },
    /// No IKE SA of the connection left.
    Gone {
        /// The connection.
        conn: String,
    },
    /// The connection's children (of this name, or all) replaced by new ones: none of `old`
    /// left, and at least as many installed.
    ChildrenRekeyed {
        /// The connection.
        conn: String,
        /// Only children of this name.
        child: Option<String>,
        /// The ids of the children being replaced.
        old: Vec<String>,
    },
    /// The connection's IKE SAs `old` replaced by an established one.
    IkeRekeyed {
        /// The connection.
        conn: String,
        /// The ids of the IKE SAs being replaced.
        old: Vec<String>,
    },
}

/// Where the wait stands after one look at `ike.list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Reached, with a line for the operator.
    Done(String),
    /// Not yet.
    Pending,
    /// Cannot be reached any more, and why.
    Failed(String),
}

fn sas_of<'a>(list: &'a Value, conn: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    list.as_array()
        .into_iter()
        .flatten()
        .filter(move |s| s["conn"] == conn)
}

fn children<'a>(sa: &'a Value) -> impl Iterator<Item = &'a Value> + 'a {
    sa["children"].as_array().into_iter().flatten()
}

/// The ids of the connection's installed children (of this name, or all): what a child rekey
/// replaces.
pub fn child_ids(list: &Value, conn: &str, child: Option<&str>) -> Vec<String> {
    sas_of(list, conn)
        .flat_map(children)
        .filter(|c| c["state"] == "installed" && child.is_none_or(|n| c["name"] == n))
        .filter_map(|c| c["id"].as_str().map(String::from))
        .collect()
}

/// The ids of the connection's established IKE SAs: what an IKE SA rekey replaces.
pub fn ike_ids(list: &Value, conn: &str) -> Vec<String> {
    sas_of(list, conn)
        .filter(|s| s["state"] == "established")
        .filter_map(|s| s["id"].as_str().map(String::from))
        .collect()
}

/// One look at `ike.list`.
pub fn check(goal: &Goal, list: &Value) -> Progress {
    match goal {
        Goal::Up { ike_sa, child } => {
            let Some(sa) = list
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["id"] == ike_sa.as_str())
            else {
                return Progress::Failed(format!(
                    "IKE SA {ike_sa} is gone: the exchange failed (esprit-ike's log says why)"
                ));
            };
            match sa["state"].as_str() {
                Some("established") => {
                    let up = children(sa).find(|c| {
                        c["state"] == "installed"
                            && child.as_ref().is_none_or(|n| c["name"] == n.as_str())
                    });
                    match up {
                        Some(c) => Progress::Done(format!(
                            "IKE SA {ike_sa} established, child {} installed (SPIs in {} out {})",
                            c["name"].as_str().unwrap_or("?"),
                            c["inbound_spi"].as_str().unwrap_or("?"),
                            c["outbound_spi"].as_str().unwrap_or("?"),
                        )),
                        None => Progress::Pending,
                    }
                }
                Some("deleting") | Some("dead") => Progress::Failed(format!(
                    "IKE SA {ike_sa} is being deleted: the exchange failed (esprit-ike's log says why)"
                )),
                _ => Progress::Pending,
            }
        }
        Goal::Gone { conn } => match sas_of(list, conn).count() {
            0 => Progress::Done(format!("{conn}: no IKE SA left")),
            _ => Progress::Pending,
        },
        Goal::ChildrenRekeyed { conn, child, old } => {
            if sas_of(list, conn).all(|s| s["state"] != "established") {
                return Progress::Failed(format!("{conn}: no established IKE SA left"));
            }
            let now = child_ids(list, conn, child.as_deref());
            // An old child stays listed (state "rekeying") until its delete is done.
            let old_left = sas_of(list, conn)
                .flat_map(children)
                .filter_map(|c| c["id"].as_str())
                .any(|id| old.iter().any(|o| o == id));
            if !old_left && now.len() >= old.len() {
                Progress::Done(format!(
                    "{conn}: {} child SAs rekeyed ({})",
                    old.len(),
                    now.join(", ")
                ))
            } else {
                Progress::Pending
            }
        }
        Goal::IkeRekeyed { conn, old } => {
            let now = ike_ids(list, conn);
            let any_old = sas_of(list, conn)
                .filter_map(|s| s["id"].as_str())
                .any(|id| old.iter().any(|o| o == id));
            if sas_of(list, conn).next().is_none() {
                return Progress::Failed(format!("{conn}: no IKE SA left"));
            }
            match now.iter().find(|id| !old.contains(id)) {
                Some(new) if !any_old => {
                    Progress::Done(format!("{conn}: IKE SA rekeyed, now {new}"))
                }
                _ => Progress::Pending,
            }
        }
    }
}

/// Follows `goal` on the esprit-ike answering at `socket` until it is reached (the line to
/// print), fails, or `timeout` passes (both errors).
pub fn wait(socket: &Path, goal: &Goal, timeout: Duration) -> Result<String, String> {
    let start = Instant::now();
    loop {
        let list = call(socket, &ControlRequest::IkeList)?;
        match check(goal, &list) {
            Progress::Done(line) => return Ok(line),
            Progress::Failed(why) => return Err(why),
            Progress::Pending if start.elapsed() >= timeout => {
                return Err(format!("not done after {timeout:?}"));
            }
            Progress::Pending => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sa(id: &str, state: &str, children: Value) -> Value {
        json!({"id": id, "conn": "site", "state": state, "children": children})
    }

    fn child(id: &str, name: &str, state: &str) -> Value {
        json!({"id": id, "name": name, "state": state, "inbound_spi": "0000abcd", "outbound_spi": "0000dcba"})
    }

    #[test]
    fn initiation_succeeds_waits_or_fails() {
        let goal = Goal::Up {
            ike_sa: "aa".into(),
            child: Some("net".into()),
        };
        let pending = json!([sa("aa", "connecting", json!([]))]);
        assert_eq!(check(&goal, &pending), Progress::Pending);
        let other_child = json!([sa(
            "aa",
            "established",
            json!([child("site/dmz/1", "dmz", "installed")])
        )]);
        assert_eq!(check(&goal, &other_child), Progress::Pending);
        let up = json!([sa(
            "aa",
            "established",
            json!([child("site/net/1", "net", "installed")])
        )]);
        assert!(matches!(check(&goal, &up), Progress::Done(l) if l.contains("child net")));
        assert!(matches!(check(&goal, &json!([])), Progress::Failed(_)));
        let deleting = json!([sa("aa", "deleting", json!([]))]);
        assert!(matches!(check(&goal, &deleting), Progress::Failed(_)));
    }

    #[test]
    fn termination_and_rekeys() {
        let gone = Goal::Gone {
            conn: "site".into(),
        };
        assert_eq!(
            check(&gone, &json!([sa("aa", "deleting", json!([]))])),
            Progress::Pending
        );
        assert!(matches!(check(&gone, &json!([])), Progress::Done(_)));

        let before = json!([sa(
            "aa",
            "established",
            json!([child("site/net/1", "net", "installed")])
        )]);
        let old = child_ids(&before, "site", None);
        assert_eq!(old, vec!["site/net/1".to_string()]);
        let goal = Goal::ChildrenRekeyed {
            conn: "site".into(),
            child: None,
            old,
        };
        let during = json!([sa(
            "aa",
            "established",
            json!([
                child("site/net/1", "net", "rekeying"),
                child("site/net/2", "net", "installed")
            ])
        )]);
        assert_eq!(check(&goal, &during), Progress::Pending);
        let after = json!([sa(
            "aa",
            "established",
            json!([child("site/net/2", "net", "installed")])
        )]);
        assert!(matches!(check(&goal, &after), Progress::Done(_)));
        assert!(matches!(check(&goal, &json!([])), Progress::Failed(_)));

        let goal = Goal::IkeRekeyed {
            conn: "site".into(),
            old: ike_ids(&before, "site"),
        };
        let both = json!([
            sa("aa", "established", json!([])),
            sa("bb", "established", json!([]))
        ]);
        assert_eq!(check(&goal, &both), Progress::Pending);
        let new = json!([sa("bb", "established", json!([]))]);
        assert!(matches!(check(&goal, &new), Progress::Done(l) if l.contains("bb")));
        assert!(matches!(check(&goal, &json!([])), Progress::Failed(_)));
    }
}
