//! Sources of cost data. Only this module speaks SQL.
//!
//! `pg`: PostgreSQL (backfill, gap-free tail, schema); `demo`: the built-in
//! synthetic stream; `writer`: writes synthetic events for `burnrate simulate`.

pub mod alert_state;
mod backfill;
pub mod columns;
pub mod connect;
pub mod demo;
pub mod doctor;
pub mod error;
pub mod export;
mod history;
pub mod idgaps;
pub mod keyset;
pub mod notify;
pub mod partitions;
pub mod pg;
pub mod prices;
pub mod replica;
pub mod rollup;
pub mod run;
pub mod schema;
pub mod shapes;
mod sql;
mod tail;
pub mod tenancy;
pub mod tls;
pub mod top;
pub mod txcursor;
pub mod window;
pub mod writer;

pub use connect::ConnectTarget;
pub use error::SourceError;
pub use pg::{PgSource, PollStats, SourceOptions};
pub use run::{SourceControl, SourceHandle, run};
pub use tail::row_to_fact;
pub use top::{RecentRequests, TopSource};
