//! Sources of cost data. Only this module speaks SQL.
//!
//! `pg`: PostgreSQL (backfill, gap-free tail, schema); `demo`: the built-in
//! synthetic stream; `writer`: writes synthetic events for `burnrate simulate`.
