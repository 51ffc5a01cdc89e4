//! `burnrate db init [--partitioned] [--rls] [--notify]`: create or upgrade the schema, idempotently.

use color_eyre::Result;

use super::context::Context;
use crate::cli::DbInitArgs;
use crate::source::{notify, partitions, schema, tenancy};

pub async fn init(ctx: &Context, args: &DbInitArgs) -> Result<()> {
    let target = ctx.connect_target()?;
    if args.partitioned {
        let (report, parts) =
            partitions::init_partitioned(&target, &ctx.cfg.database.table, chrono::Utc::now())
                .await?;
        println!("{report}");
        println!("{parts}");
    } else {
        let report = schema::init(&target, &ctx.cfg.database.table).await?;
        println!("{report}");
    }
    if args.rls {
        let rls = tenancy::enable_rls(&target, &ctx.cfg.database.table).await?;
        println!("{rls}");
    }
    if args.notify {
        let channel = ctx.cfg.database.notify_channel.as_deref();
        let report = notify::enable_notify(&target, &ctx.cfg.database.table, channel).await?;
        println!("{report}");
    }
    Ok(())
}
