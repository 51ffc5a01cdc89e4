//! `burnrate db init [--partitioned] [--rls] [--notify] [--rollup [--rebuild]]`:
//! create or upgrade the schema, idempotently; `burnrate db rollup`: one roll step.

use color_eyre::Result;

use super::context::Context;
use crate::cli::DbInitArgs;
use crate::source::{notify, partitions, replica, rollup, schema, tenancy};

pub async fn init(ctx: &Context, args: &DbInitArgs) -> Result<()> {
    // Writes go to the primary when the read URL is a replica.
    let target = ctx.write_target()?;
    replica::refuse_standby(&target, "db init", &ctx.cfg.database.table).await?;
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
    if args.rollup {
        let opts = ctx.source_options()?;
        let phase = ctx.store_config().calendar.phase_secs();
        let report =
            rollup::init_rollup(&target, &opts.table, &opts.map, phase, args.rebuild).await?;
        println!("{report}");
    }
    Ok(())
}

pub async fn rollup(ctx: &Context) -> Result<()> {
    let target = ctx.write_target()?;
    replica::refuse_standby(&target, "db rollup", &ctx.cfg.database.table).await?;
    let opts = ctx.source_options()?;
    let stats = rollup::roll_once(&target, &opts.table, &opts.map).await?;
    println!(
        "rolled {} rows into {} hourly groups in {} ms (transactions {} to {})",
        stats.rows, stats.groups, stats.millis, stats.from, stats.to
    );
    Ok(())
}
