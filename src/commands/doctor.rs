//! `burnrate doctor`: prints what the source would do against this database and
//! what needs fixing (as text, or one JSON object with `--json`); fails (exit code 1)
//! when anything does.

use std::fmt::Write as _;

use color_eyre::Result;
use color_eyre::eyre::bail;
use serde_json::{Value, json};

use super::context::Context;
use crate::cli::DoctorArgs;
use crate::model::TailMode;
use crate::source::columns::Field;
use crate::source::doctor::{DoctorReport, doctor as run_doctor};

pub async fn doctor(ctx: &Context, args: &DoctorArgs) -> Result<()> {
    let target = ctx.connect_target()?;
    let opts = ctx.source_options()?;
    let report = run_doctor(&target, &opts).await;
    if args.json {
        println!("{}", to_json(&report));
    } else {
        print!("{}", render(&report));
    }
    if !report.ok() {
        bail!(
            "doctor found {} problem{} (above)",
            report.problems.len(),
            if report.problems.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// The report as text, one check per line.
pub fn render(r: &DoctorReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "database   {}{}",
        r.endpoint,
        r.server_version
            .as_ref()
            .map(|v| format!(" (PostgreSQL {v})"))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "preset     {}", r.preset);
    let _ = writeln!(out, "table      {}", r.table);
    if !r.mapped.is_empty() {
        let mut first = true;
        for m in &r.mapped {
            let _ = writeln!(
                out,
                "{}{:<14} <- {}  ({})",
                if first { "columns    " } else { "           " },
                m.field.key(),
                m.spec,
                m.found
            );
            first = false;
        }
        for f in &r.unmapped {
            let _ = writeln!(
                out,
                "           {:<14} (none): not in this table{}",
                f.key(),
                match f {
                    Field::Tx | Field::Order => "",
                    _ => "; its views show \"(none)\"",
                }
            );
        }
    }
    if let Some(mode) = r.mode {
        let _ = writeln!(out, "tail mode  {}: {}", mode.label(), promise(r, mode));
    }
    if r.standby == Some(true) {
        let lag = r
            .replay_lag
            .as_ref()
            .map(|l| l.describe())
            .unwrap_or_else(|| "replay lag unknown".into());
        let writes = match &r.primary {
            Some(p) => format!("writes (alert state, rollup rolls, db init) go to the primary {p}"),
            None => "no primary URL: alert state is not shared".to_string(),
        };
        let _ = writeln!(out, "replica    hot standby, {lag}; {writes}");
    }
    if let Some(h) = &r.open_transaction {
        let _ = writeln!(
            out,
            "open tx    {}: holds the server's xmin (the rollup waits for it; the tail \
             reads past it and counts its rows when it commits)",
            crate::ui::text::clean(&h.describe(), 200)
        );
    }
    if let Some(rows) = r.rows {
        let range = match (r.first, r.last) {
            (Some(a), Some(b)) => format!(
                ", {} to {}",
                a.format("%Y-%m-%d %H:%M:%S UTC"),
                b.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            _ => String::new(),
        };
        let _ = writeln!(out, "rows       {rows}{range}");
    }
    if !r.priced_models.is_empty() {
        let _ = writeln!(
            out,
            "prices     {}: rows that log no cost or 0 get it computed from their tokens",
            r.priced_models.join(", ")
        );
    }
    let mut first = true;
    for i in &r.indexes {
        let state = match &i.found {
            Some(name) => format!("ok ({name})"),
            None => format!("MISSING: {}", i.create),
        };
        let _ = writeln!(
            out,
            "{}({}) for {}: {state}",
            if first { "indexes    " } else { "           " },
            i.columns.join(", "),
            i.purpose
        );
        first = false;
    }
    for (preset, table) in &r.other_presets {
        let _ = writeln!(
            out,
            "hint       --preset {preset} fits this database (table {table})"
        );
    }
    for h in &r.hints {
        let _ = writeln!(out, "hint       {h}");
    }
    if r.ok() {
        let _ = writeln!(out, "result     ok");
    } else {
        for p in &r.problems {
            let _ = writeln!(out, "problem    {p}");
        }
    }
    out
}

/// What the tail mode guarantees, in a sentence.
fn promise(r: &DoctorReport, mode: TailMode) -> String {
    match mode {
        TailMode::TxWatermark if r.standby == Some(true) => {
            "every committed row is read exactly once, as the standby replays it; on a standby \
             a transaction held open on the primary delays the rows committed after it"
                .to_string()
        }
        TailMode::TxWatermark => {
            "every committed row is read exactly once, whenever it commits".to_string()
        }
        TailMode::IdOverlap => "re-reads missing ids for database.id_gap_settle; a row \
                                committing later than that is missed"
            .to_string(),
        TailMode::KeysetOverlap => format!(
            "re-reads the last {} behind the newest row by (timestamp, key) and \
             deduplicates by key; a row written later than that is missed",
            humantime::format_duration(r.overlap)
        ),
        TailMode::WindowOverlap => crate::source::window::guarantee(r.overlap),
        TailMode::Demo => String::new(),
    }
}

/// The report as one JSON object: the same findings as `render`, field by field.
pub fn to_json(r: &DoctorReport) -> Value {
    json!({
        "ok": r.ok(),
        "endpoint": r.endpoint,
        "server_version": r.server_version,
        "preset": r.preset.name(),
        "table": r.table,
        "columns": r.mapped.iter().map(|m| json!({
            "field": m.field.key(),
            "column": m.spec,
            "type": m.found,
        })).collect::<Vec<_>>(),
        "unmapped": r.unmapped.iter().map(|f| f.key()).collect::<Vec<_>>(),
        "tail_mode": r.mode.map(|mode| json!({
            "mode": mode.json_name(),
            "label": mode.label(),
            "promise": promise(r, mode),
            "overlap_secs": matches!(mode, TailMode::KeysetOverlap | TailMode::WindowOverlap)
                .then_some(r.overlap.as_secs()),
        })),
        "rows": r.rows,
        "first": r.first,
        "last": r.last,
        "indexes": r.indexes.iter().map(|i| json!({
            "purpose": i.purpose,
            "columns": i.columns,
            "present": i.found.is_some(),
            "index": i.found,
            "create": i.create,
        })).collect::<Vec<_>>(),
        "priced_models": r.priced_models,
        "other_presets": r.other_presets.iter().map(|(preset, table)| json!({
            "preset": preset.name(),
            "table": table,
        })).collect::<Vec<_>>(),
        "hints": r.hints,
        "problems": r.problems,
        "standby": r.standby,
        "primary": r.primary,
        "replay_lag": r.replay_lag.as_ref().map(|l| json!({
            "secs": l.secs,
            "unreplayed_bytes": l.unreplayed_bytes,
            "behind_primary_bytes": l.behind_primary_bytes,
            "last_replayed_commit": l.last_replayed_commit,
        })),
        "open_transaction": r.open_transaction.as_ref().map(|h| json!({
            "pid": h.pid,
            "database": h.database,
            "age_secs": h.age_secs,
            "prepared": h.prepared,
        })),
    })
}
