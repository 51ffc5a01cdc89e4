//! `burnrate db init`: create or upgrade the schema, idempotently.

use color_eyre::Result;

use super::context::Context;
use crate::source::schema;

pub async fn init(ctx: &Context) -> Result<()> {
    let target = ctx.connect_target()?;
    let report = schema::init(&target, &ctx.cfg.database.table).await?;
    println!("{report}");
    Ok(())
}
