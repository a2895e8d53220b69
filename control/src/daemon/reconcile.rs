//! Reconciliation of a restarted esprit-ike with the dataplane (decision 0016).
//!
//! Every SA esprit-ike installs carries an owner tag, `esprit-ike/<instance>/<conn>/<child>`,
//! where the instance is random per run. When esprit-ike (re)connects to the dataplane it lists
//! the SAs and sorts them:
//!
//! - tagged with this run's instance and known to the link: ours, nothing to do;
//! - tagged with this run's instance but no longer known (a delete that failed while the link
//!   was down): removed at once;
//! - tagged by an earlier run (an *orphan*) of a connection and child that still exist: kept
//!   forwarding, and the connection is re-established (with INITIAL_CONTACT, so the peer drops
//!   its stale IKE SA); when the child comes up again the orphans are removed, the outbound SA
//!   at once and the inbound one after the make-before-break grace; orphans nobody replaces
//!   within `daemon.orphan_timeout` are removed;
//! - tagged by an earlier run for a connection or child the configuration no longer has:
//!   removed at once;
//! - without a tag (manual SAs, `espctl sa add`): left alone.

use esprit_api::{SaInfo, Spi};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Owner tags live in `esprit-api`, which the dataplane reads them with too.
pub use esprit_api::owner::{owner_tag, parse_owner, Owner, OWNER_PREFIX};

/// An SA in the dataplane that this run of esprit-ike did not install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    /// Its SPI.
    pub spi: u32,
    /// "in" or "out".
    pub dir: &'static str,
    /// The local address of an inbound SA, the remote one of an outbound SA (what `sa.delete`
    /// narrows with).
    pub address: IpAddr,
    /// Its owner.
    pub owner: Owner,
}

impl Foreign {
    fn from_info(sa: &SaInfo) -> Option<Foreign> {
        let owner = parse_owner(sa.owner.as_deref()?)?;
        let spi = Spi::parse(&sa.spi)?.0;
        let (dir, address) = match sa.direction.as_str() {
            "in" => ("in", sa.local.parse().ok()?),
            "out" => ("out", sa.remote.parse().ok()?),
            _ => return None,
        };
        Some(Foreign {
            spi,
            dir,
            address,
            owner,
        })
    }
}

/// What a review of the dataplane's SAs decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Review {
    /// SAs to remove now.
    pub remove: Vec<Foreign>,
    /// Orphans now kept until replaced (or the timeout).
    pub adopted: usize,
}

/// The orphans of earlier runs, kept until replaced.
pub struct Reconciler {
    instance: String,
    timeout: Duration,
    /// Orphans and when they go at the latest.
    orphans: Vec<(Instant, Foreign)>,
    /// Inbound orphans already replaced, removed after the grace period.
    draining: Vec<(Instant, Foreign)>,
    /// (connection, child) pairs whose re-establishment was asked for.
    requested: BTreeSet<(String, String)>,
}

impl Reconciler {
    /// A reconciler for run `instance`; orphans not replaced within `timeout` are removed.
    pub fn new(instance: String, timeout: Duration) -> Self {
        Reconciler {
            instance,
            timeout,
            orphans: Vec::new(),
            draining: Vec::new(),
            requested: BTreeSet::new(),
        }
    }

    /// This run's instance id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Sorts the dataplane's SAs (`sa.list`). `installed(spi, dir)` says whether this run's
    /// link knows the SA; `configured(conn, child)` whether the configuration has the child.
    pub fn review(
        &mut self,
        now: Instant,
        listing: &[SaInfo],
        installed: impl Fn(u32, &'static str) -> bool,
        configured: impl Fn(&str, &str) -> bool,
    ) -> Review {
        let mut r = Review::default();
        for sa in listing {
            let Some(f) = Foreign::from_info(sa) else {
                continue;
            };
            let known = self
                .orphans
                .iter()
                .chain(self.draining.iter())
                .any(|(_, o)| o.spi == f.spi && o.dir == f.dir && o.address == f.address);
            if known {
                continue;
            }
            if f.owner.instance == self.instance {
                if !installed(f.spi, f.dir) {
                    r.remove.push(f);
                }
            } else if configured(&f.owner.conn, &f.owner.child) {
                r.adopted += 1;
                self.orphans.push((now + self.timeout, f));
            } else {
                r.remove.push(f);
            }
        }
        r
    }

    /// Children with orphans whose re-establishment should start now, as (connection, child):
    /// a child of a connection with an established IKE SA (`established`) is asked for at once;
    /// otherwise one child per connection that has no IKE SA at all (`has_ike_sa`) brings up a
    /// new IKE SA, and the others follow once it is established. Each is asked for once.
    pub fn wanted(
        &mut self,
        established: impl Fn(&str) -> bool,
        has_ike_sa: impl Fn(&str) -> bool,
    ) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let pending: BTreeSet<(String, String)> = self
            .orphans
            .iter()
            .map(|(_, o)| (o.owner.conn.clone(), o.owner.child.clone()))
            .collect();
        for (conn, child) in pending {
            if self.requested.contains(&(conn.clone(), child.clone())) {
                continue;
            }
            let go =
                established(&conn) || (!has_ike_sa(&conn) && !out.iter().any(|(c, _)| *c == conn));
            if go {
                self.requested.insert((conn.clone(), child.clone()));
                out.push((conn, child));
            }
        }
        out
    }

    /// `conn`'s child `child` came up in this run: its orphans go, the outbound ones now (the
    /// returned list) and the inbound ones after `grace`, so packets in flight still decrypt.
    pub fn replaced(
        &mut self,
        now: Instant,
        conn: &str,
        child: &str,
        grace: Duration,
    ) -> Vec<Foreign> {
        let mut now_out = Vec::new();
        let mut keep = Vec::new();
        for (deadline, o) in std::mem::take(&mut self.orphans) {
            if o.owner.conn != conn || o.owner.child != child {
                keep.push((deadline, o));
            } else if o.dir == "out" {
                now_out.push(o);
            } else {
                self.draining.push((now + grace, o));
            }
        }
        self.orphans = keep;
        self.requested
            .remove(&(conn.to_string(), child.to_string()));
        now_out
    }

    /// Orphans due for removal: inbound ones whose grace ended, and those nobody replaced in
    /// time (the second list, for the log).
    pub fn due(&mut self, now: Instant) -> (Vec<Foreign>, Vec<Foreign>) {
        let (drained, draining): (Vec<_>, Vec<_>) = std::mem::take(&mut self.draining)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.draining = draining;
        let (expired, orphans): (Vec<_>, Vec<_>) = std::mem::take(&mut self.orphans)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.orphans = orphans;
        for (_, o) in &expired {
            self.requested
                .remove(&(o.owner.conn.clone(), o.owner.child.clone()));
        }
        (
            drained.into_iter().map(|(_, o)| o).collect(),
            expired.into_iter().map(|(_, o)| o).collect(),
        )
    }

    /// Orphans still waiting for their replacement.
    pub fn orphans(&self) -> usize {
        self.orphans.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(spi: u32, dir: &str, owner: Option<String>) -> SaInfo {
        esprit_testkit::sa_info(spi, dir, owner)
    }

    #[test]
    fn review_sorts_ours_orphans_stale_and_manual() {
        let now = Instant::now();
        let mut r = Reconciler::new("new".into(), Duration::from_secs(300));
        let listing = vec![
            info(1, "in", Some(owner_tag("new", "site", "net"))),
            info(2, "out", Some(owner_tag("new", "site", "net"))),
            info(3, "in", Some(owner_tag("old", "site", "net"))),
            info(4, "out", Some(owner_tag("old", "site", "net"))),
            info(5, "in", Some(owner_tag("old", "gone", "net"))),
            info(6, "in", None),
        ];
        let review = r.review(
            now,
            &listing,
            |spi, _| spi == 1,
            |conn, child| conn == "site" && child == "net",
        );
        let removed: Vec<u32> = review.remove.iter().map(|f| f.spi).collect();
        // 2: this run's but unknown to the link; 5: its connection is gone; 6 is manual.
        assert_eq!(removed, vec![2, 5]);
        assert_eq!(review.adopted, 2);
        assert_eq!(r.orphans(), 2);
        // A second listing does not adopt them twice.
        let again = r.review(now, &listing[2..4], |_, _| false, |_, _| true);
        assert_eq!(again, Review::default());
        // No IKE SA: the connection is re-established once.
        assert_eq!(
            r.wanted(|_| false, |_| false),
            vec![("site".to_string(), "net".to_string())]
        );
        assert!(r.wanted(|_| false, |_| false).is_empty());
        // The child is back: outbound orphan at once, inbound after the grace.
        let grace = Duration::from_secs(2);
        let out = r.replaced(now, "site", "net", grace);
        assert_eq!(
            out.iter().map(|f| (f.spi, f.dir)).collect::<Vec<_>>(),
            vec![(4, "out")]
        );
        assert_eq!(r.due(now), (vec![], vec![]));
        let (drained, expired) = r.due(now + grace);
        assert_eq!(drained.iter().map(|f| f.spi).collect::<Vec<_>>(), vec![3]);
        assert!(expired.is_empty());
        assert_eq!(r.orphans(), 0);
    }

    #[test]
    fn orphans_nobody_replaces_expire() {
        let now = Instant::now();
        let t = Duration::from_secs(300);
        let mut r = Reconciler::new("new".into(), t);
        let listing = vec![info(3, "in", Some(owner_tag("old", "site", "net")))];
        r.review(now, &listing, |_, _| false, |_, _| true);
        // An IKE SA of the connection is being set up (the peer's): wait for it.
        assert!(r.wanted(|_| false, |_| true).is_empty());
        assert_eq!(r.due(now + t - Duration::from_secs(1)), (vec![], vec![]));
        let (drained, expired) = r.due(now + t);
        assert!(drained.is_empty());
        assert_eq!(expired.len(), 1);
        assert_eq!(r.orphans(), 0);
    }
}
