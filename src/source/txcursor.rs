//! The tx tail's position, PgQ style: the snapshot of the previous poll. Each poll
//! reads the rows whose transaction is visible in the current snapshot and was not
//! in the previous one. Visible sets only grow from one snapshot to the next, so
//! every committed row is read exactly once, whatever order transactions commit
//! in, and a transaction still running (in any database of the server) delays
//! only its own rows, never the rows committed after it.
//!
//! The rows to read are bounded without scanning what the previous poll read:
//! those of the previous snapshot's in-progress list (`tx = ANY(xip)`, one index
//! probe each) and those from its xmax to the current xmax (an index range).

/// Where the tx tail resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TxCursor {
    /// The previous poll's snapshot, as `pg_snapshot` text (`xmin:xmax:xip,...`):
    /// every row whose transaction is visible in it was read.
    pub prev: String,
    /// A poll that handed over part of its rows (a backlog read in pages, cut by a
    /// disconnect): its snapshot and the last (tx, id) handed over. The next poll
    /// finishes it before taking a new snapshot.
    pub pending: Option<Pending>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pending {
    pub snapshot: String,
    pub after: (u64, i64),
}

impl TxCursor {
    /// After a backfill that counted every row with tx below `xmin`: the snapshot
    /// in which exactly those are visible.
    pub fn below(xmin: u64) -> TxCursor {
        TxCursor {
            prev: format!("{xmin}:{xmin}:"),
            pending: None,
        }
    }

    /// The snapshot being read and where in it; a new one is `current`.
    pub fn start(&mut self, current: String) -> &Pending {
        self.pending.get_or_insert(Pending {
            snapshot: current,
            after: (0, i64::MIN),
        })
    }

    pub fn needs_snapshot(&self) -> bool {
        self.pending.is_none()
    }

    /// Rows up to `after` were handed over.
    pub fn advance(&mut self, after: (u64, i64)) {
        if let Some(p) = self.pending.as_mut() {
            p.after = after;
        }
    }

    /// Where the index range of transactions past the previous snapshot starts,
    /// inclusive: its xmax, or just past the last row handed over if beyond it.
    /// One bound for the index, not two: PostgreSQL starts a scan with both
    /// `tx >= a` and `(tx, id) > b` from the row comparison, however loose.
    pub fn range_start(&self) -> Option<(u64, i64)> {
        let xmax: u64 = self.prev.split(':').nth(1)?.parse().ok()?;
        let from = (xmax, i64::MIN);
        Some(match &self.pending {
            Some(p) if p.after >= from => match p.after {
                (tx, i64::MAX) => (tx + 1, i64::MIN),
                (tx, id) => (tx, id + 1),
            },
            _ => from,
        })
    }

    /// The snapshot was read to the end: it is the previous one from now on.
    pub fn finish(&mut self) {
        if let Some(p) = self.pending.take() {
            self.prev = p.snapshot;
        }
    }
}

/// Whether every transaction visible in `prev` is visible in `current`, for a
/// standby's snapshot cut at its xmin (`xmin:xmin:`): its xmin is at or past the
/// previous snapshot's xmax. Text that does not parse is left to the tail's own
/// checks (true).
pub(super) fn covers(current: &str, prev: &str) -> bool {
    let xmin = current
        .split(':')
        .next()
        .and_then(|x| x.parse::<u64>().ok());
    let xmax = prev.split(':').nth(1).and_then(|x| x.parse::<u64>().ok());
    match (xmin, xmax) {
        (Some(xmin), Some(xmax)) => xmin >= xmax,
        _ => true,
    }
}

/// The oldest running transaction that holds the server's xmin back, as far as
/// `pg_stat_activity` shows it (other users' sessions need pg_read_all_stats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxHolder {
    pub pid: Option<i32>,
    pub database: Option<String>,
    pub age_secs: i64,
    /// Prepared (two-phase) transactions have no session.
    pub prepared: Option<String>,
}

impl TxHolder {
    /// For `doctor`: "pid 4242 in database other, open 65s".
    pub fn describe(&self) -> String {
        let who = match (&self.prepared, self.pid) {
            (Some(gid), _) => format!("prepared transaction {gid:?}"),
            (None, Some(pid)) => format!("pid {pid}"),
            (None, None) => "a session this role cannot see (grant pg_read_all_stats)".into(),
        };
        let db = self
            .database
            .as_ref()
            .map(|d| format!(" in database {d}"))
            .unwrap_or_default();
        format!("{who}{db}, open {}s", self.age_secs)
    }

    /// For the status bar: short, hostile names cleaned by the caller.
    pub fn short(&self) -> String {
        let age = format!("{}s", self.age_secs);
        match (&self.prepared, self.pid, &self.database) {
            (Some(gid), _, db) => format!(
                "open tx {age}: prepared {gid:?}{}",
                db.as_ref().map(|d| format!(" db {d}")).unwrap_or_default()
            ),
            (None, Some(pid), Some(db)) => format!("open tx {age}: pid {pid} db {db}"),
            (None, Some(pid), None) => format!("open tx {age}: pid {pid}"),
            (None, None, _) => format!("open tx {age}: not visible to this role"),
        }
    }
}

/// The oldest transaction with an xid (ours excluded) and, failing that, the
/// oldest prepared one: (pid, database, age secs, prepared gid). No row when none
/// runs. Both views hide nothing from a superuser; others see other users' pids
/// as NULL queries but still their pid and database.
pub(crate) const OLDEST_OPEN_TX: &str = "SELECT pid, datname::text, age, gid FROM (\
       SELECT pid, datname, floor(extract(epoch FROM now() - xact_start))::int8 AS age, NULL::text AS gid \
         FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() \
       UNION ALL \
       SELECT NULL::int4, database, floor(extract(epoch FROM now() - prepared))::int8, gid \
         FROM pg_prepared_xacts) t \
     ORDER BY age DESC NULLS LAST LIMIT 1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_cut_midway_resumes_in_its_own_snapshot() {
        let mut c = TxCursor::below(100);
        assert_eq!(c.prev, "100:100:");
        assert!(c.needs_snapshot());
        assert_eq!(c.start("100:120:105".into()).after, (0, i64::MIN));
        c.advance((101, 7));
        // A reconnect: the same snapshot and position, whatever is current now.
        assert!(!c.needs_snapshot());
        let p = c.start("130:140:".into()).clone();
        assert_eq!(p.snapshot, "100:120:105");
        assert_eq!(p.after, (101, 7));
        c.finish();
        assert_eq!(c.prev, "100:120:105");
        assert!(c.needs_snapshot());
    }

    #[test]
    fn the_range_starts_at_the_previous_xmax_or_past_the_last_row() {
        let mut c = TxCursor::below(100);
        c.prev = "90:100:95".into();
        c.start("90:130:95".into());
        assert_eq!(c.range_start(), Some((100, i64::MIN)));
        c.advance((95, 3));
        assert_eq!(c.range_start(), Some((100, i64::MIN)), "a listed one");
        c.advance((104, 7));
        assert_eq!(c.range_start(), Some((104, 8)));
        c.advance((104, i64::MAX));
        assert_eq!(c.range_start(), Some((105, i64::MIN)));
        c.prev = "garbage".into();
        assert_eq!(c.range_start(), None);
    }

    #[test]
    fn a_standby_snapshot_behind_the_previous_one_does_not_cover_it() {
        // From a primary's snapshot (xmax 120) to a standby cut at 110: rows of
        // 110..120 were read already; reading up to 110 again would count them twice.
        assert!(!covers("110:110:", "100:120:105"));
        assert!(covers("120:120:", "100:120:105"));
        assert!(covers("130:130:", "120:120:"));
        assert!(covers("garbage", "100:120:"));
    }

    #[test]
    fn the_holder_is_named_briefly() {
        let h = TxHolder {
            pid: Some(4242),
            database: Some("other".into()),
            age_secs: 65,
            prepared: None,
        };
        assert_eq!(h.short(), "open tx 65s: pid 4242 db other");
        let hidden = TxHolder {
            database: None,
            pid: None,
            ..h.clone()
        };
        assert_eq!(hidden.short(), "open tx 65s: not visible to this role");
    }
}
