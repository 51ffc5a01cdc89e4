//! The benchmark suite of issue 8: run it with `scripts/bench` (which builds this
//! example and the binary in release mode), see BENCHMARKS.md for results.
//!
//! scripts/bench                  # 10,000,000 rows (loading takes several minutes)
//! scripts/bench --quick          # a smoke run: 200,000 rows, fewer repetitions
//! scripts/bench --rows 2000000   # any size
//! scripts/bench --reuse          # measure the burnrate_bench data set already loaded
//! scripts/bench --highcard --rows 10000000  # issue 17's high-cardinality set (below)
//!
//! It builds the reference data set in its own database, `burnrate_bench` (dropped
//! and recreated; no other database is touched): 30 days ending now, 50,000
//! Zipf-distributed users, 20 features, 8 models, 5 tenants, 3 regions, with the
//! simulator's daily and weekly rhythm, written with COPY by the same generator and
//! writer as `burnrate simulate`. The simulator's catalog has 14 features; to reach
//! the reference's 20, half the requests (by a hash of the request id) of the six
//! busiest features are renamed `<feature>_beta`. Then it measures, each figure the
//! median of several runs, and prints one table of figures and ratios:
//!
//! 1. cold start: `burnrate snapshot --json` wall time (process start to the first
//!    complete snapshot), against the three seed dashboard queries run once
//!    (reconstructed, see scripts/bench.sql) and a bare `sum(cost_usd), count(*)`;
//!    then the same in rollup mode, after `db init --rollup`;
//! 2. database time per refresh while tailing (client-side time of one tail poll,
//!    an upper bound: pg_stat_statements is not preloaded on the shared server),
//!    against the three seed queries (one dashboard refresh);
//! 3. freshness: INSERT commit to the row being in the store's aggregates, p50 and
//!    p99, with a writer at 5,000 rows/s, polling as `source::run` does (a fixed
//!    rate), then again with the NOTIFY wake-up of `db init --notify`;
//! 4. the highest insert rate the tail keeps up with (freshness not growing);
//! 5. peak RSS of `burnrate watch` (in a pseudo-terminal) and of `snapshot`;
//! 6. CPU of `burnrate watch` while no new rows arrive, over 60 s;
//! 7. time to render one drill-down frame listing every user (ratatui TestBackend,
//!    `ui::draw` of a DrillView built by `app::drill` from the backfilled store).
//!
//! With `--highcard` it builds instead the high-cardinality data set of issue 17 in
//! `burnrate_bench_highcard` (50,000 Zipf users, 20 features, 8 models, 3 regions,
//! 5 tenants, each name drawn independently, spread evenly over the 29 days ending
//! now: nearly every row is its own (hour, five names) combination), generated on
//! the server by `highcard_insert` of scripts/bench.sql in batches, and measures,
//! each against the seed cost-by-feature query timed before and after in the same
//! run: the first screen and the full dashboard of `watch` in a pseudo-terminal
//! (see `shows_live_numbers` and `shows_full_dashboard` for what is detected), cold
//! (a fresh state directory) and restarted (a second start in the same directory
//! right after); `snapshot --json` wall time, its user and system CPU, the CPU of
//! the PostgreSQL processes meanwhile, its peak RSS and the store's `store` section;
//! the peak RSS of `watch`; the database time per refresh; with `--rollup` also
//! `db init --rollup` and the starts in rollup mode.
//!
//! The SQL it runs itself is in scripts/bench.sql; burnrate's own queries are the
//! library's (src/source).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use burnrate::app::drill::{Level, Nav, Window, arrange, build_level, chart};
use burnrate::app::overview::build_overview;
use burnrate::app::view::{Screen, StatusView, TopState};
use burnrate::config::DatabaseConfig;
use burnrate::detect::{DetectParams, DetectorState};
use burnrate::model::{Connection, Dim, SourceMsg, TailMode};
use burnrate::sim::catalog::FEATURES;
use burnrate::sim::{Generator, GeneratorConfig, RateShape, SimEvent};
use burnrate::source::connect::ConnectTarget;
use burnrate::source::notify;
use burnrate::source::pg::{PgSource, SourceOptions};
use burnrate::source::run::MIN_POLL_GAP;
use burnrate::source::schema::{self, TableName};
use burnrate::source::writer;
use burnrate::store::{Store, StoreConfig};
use chrono::{Duration as ChronoDuration, Utc};
use color_eyre::eyre::{Result, WrapErr, bail, eyre};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::borrow::Cow;
use tokio::sync::mpsc;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const BENCH_DB: &str = "burnrate_bench";
/// The database of the high-cardinality data set (--highcard).
const HIGHCARD_DB: &str = "burnrate_bench_highcard";
/// Its span: the last 29 days, ending at the load.
const HIGHCARD_DAYS: i64 = 29;
/// Rows per INSERT (one transaction each) when loading it.
const HIGHCARD_BATCH: u64 = 500_000;
const TABLE: &str = "cost_events";
const USERS: u32 = 50_000;
const DAYS: i64 = 30;
const SEED: u64 = 8;
const COPY_CHUNK_ROWS: usize = 100_000;
/// Features of the catalog split in two to reach the reference's 20.
const SPLIT_FEATURES: usize = 6;
/// The writer commits this often.
const WRITE_TICK: Duration = Duration::from_millis(50);
const FRESHNESS_RATE: f64 = 5_000.0;
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

struct Args {
    rows: u64,
    quick: bool,
    reuse: bool,
    /// Load the data set and stop (for profiling against it with --reuse later).
    load_only: bool,
    /// The high-cardinality data set of issue 17 (burnrate_bench_highcard) and
    /// the start-up figures measured on it instead of the reference suite.
    highcard: bool,
    /// With --highcard: also `db init --rollup` and the start-up in rollup mode.
    rollup: bool,
    /// Repetitions of each timed query or process (default 5, 3 with --quick).
    runs: Option<usize>,
    admin_url: String,
    burnrate: PathBuf,
    sql: PathBuf,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            rows: 10_000_000,
            quick: false,
            reuse: false,
            load_only: false,
            highcard: false,
            rollup: false,
            runs: None,
            admin_url: std::env::var("BURNRATE_BENCH_ADMIN_URL")
                .unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string()),
            burnrate: PathBuf::from("target/release/burnrate"),
            sql: PathBuf::from("scripts/bench.sql"),
        };
        let mut rows_given = false;
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .ok_or_else(|| eyre!("{name} needs a value (see scripts/bench --help)"))
            };
            match a.as_str() {
                "--rows" => {
                    let v = value("--rows")?;
                    args.rows = v
                        .replace(['_', ','], "")
                        .parse()
                        .map_err(|_| eyre!("--rows wants a number of rows, got {v:?}"))?;
                    rows_given = true;
                }
                "--quick" => args.quick = true,
                "--reuse" => args.reuse = true,
                "--load-only" => args.load_only = true,
                "--highcard" => args.highcard = true,
                "--rollup" => args.rollup = true,
                "--runs" => {
                    let v = value("--runs")?;
                    let n: usize = v
                        .parse()
                        .map_err(|_| eyre!("--runs wants a number of runs, got {v:?}"))?;
                    args.runs = Some(n.max(1));
                }
                "--admin-url" => args.admin_url = value("--admin-url")?,
                "--burnrate" => args.burnrate = PathBuf::from(value("--burnrate")?),
                "--sql" => args.sql = PathBuf::from(value("--sql")?),
                "-h" | "--help" => {
                    println!(
                        "usage: scripts/bench [--highcard [--rollup]] [--rows N] [--quick] [--reuse] [--admin-url URL]\n\
                         --highcard   the high-cardinality data set of issue 17 (database \
                         {HIGHCARD_DB}) and its start-up figures\n\
                         --rollup     with --highcard: also db init --rollup and start in rollup mode\n\
                         --rows N     rows of the data set (default 10,000,000)\n\
                         --quick      smoke run: 200,000 rows unless --rows, fewer repetitions\n\
                         --reuse      measure the data set already loaded (burnrate_bench, \
                         or {HIGHCARD_DB} with --highcard)\n\
                         --load-only  load the data set and stop\n\
                         --runs N     repetitions of each timed query and process (5; 3 with --quick; \
                         with --highcard 3, 2 with --quick)\n\
                         --admin-url  a database to create burnrate_bench from \
                         (default $BURNRATE_BENCH_ADMIN_URL or {DEFAULT_ADMIN_URL})"
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?} (see scripts/bench --help)"),
            }
        }
        if args.quick && !rows_given {
            args.rows = 200_000;
        }
        if args.rows == 0 {
            bail!("--rows must be at least 1");
        }
        if args.rollup && !args.highcard {
            bail!(
                "--rollup goes with --highcard (the reference suite always measures rollup mode)"
            );
        }
        Ok(args)
    }

    /// Repetitions of each timed query or process.
    fn runs(&self) -> usize {
        match (self.highcard, self.quick) {
            (false, false) => self.runs.unwrap_or(5),
            (false, true) => self.runs.unwrap_or(3),
            // Each high-cardinality run starts burnrate four times (cold and restart,
            // `watch` and `snapshot`), minutes each at 10M rows.
            (true, false) => self.runs.unwrap_or(3),
            (true, true) => self.runs.unwrap_or(2),
        }
    }

    /// The database the data set lives in.
    fn database(&self) -> &'static str {
        if self.highcard { HIGHCARD_DB } else { BENCH_DB }
    }
}

/// The statements of scripts/bench.sql by name.
struct Queries(BTreeMap<String, String>);

impl Queries {
    fn load(path: &Path) -> Result<Queries> {
        let text = std::fs::read_to_string(path).wrap_err_with(|| {
            format!("reading {} (run from the repository root)", path.display())
        })?;
        let mut map = BTreeMap::new();
        let mut name: Option<String> = None;
        let mut body = String::new();
        let mut flush = |name: &mut Option<String>, body: &mut String| {
            if let Some(n) = name.take() {
                let sql = body.trim().trim_end_matches(';').trim().to_string();
                map.insert(n, sql);
            }
            body.clear();
        };
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("-- name:") {
                flush(&mut name, &mut body);
                name = Some(n.trim().to_string());
            } else if name.is_some() {
                body.push_str(line);
                body.push('\n');
            }
        }
        flush(&mut name, &mut body);
        Ok(Queries(map))
    }

    fn get(&self, name: &str) -> Result<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| eyre!("scripts/bench.sql has no statement named {name}"))
    }

    /// A statement about the bench's database: `{database}` replaced by its name.
    fn db(&self, name: &str, database: &str) -> Result<String> {
        Ok(self.get(name)?.replace("{database}", database))
    }
}

/// Runs one statement with the simple protocol; returns the first row as text.
async fn simple(client: &Client, sql: &str) -> Result<Vec<Option<String>>> {
    let msgs = client
        .simple_query(sql)
        .await
        .wrap_err_with(|| format!("running {}", first_line(sql)))?;
    for m in msgs {
        if let SimpleQueryMessage::Row(r) = m {
            return Ok((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
        }
    }
    Ok(Vec::new())
}

fn first_line(sql: &str) -> &str {
    sql.lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with("--"))
        .unwrap_or(sql)
}

/// The admin URL with the bench database `db` instead of its own.
fn bench_url(admin: &str, db: &str) -> Result<String> {
    let scheme_end = admin
        .find("://")
        .ok_or_else(|| eyre!("--admin-url must be a postgres:// URL"))?
        + 3;
    let (base, query) = match admin.find('?') {
        Some(q) => (&admin[..q], &admin[q..]),
        None => (admin, ""),
    };
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    Ok(format!("{host_part}/{db}{query}"))
}

async fn connect(url: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .wrap_err("connecting to PostgreSQL (is it running on 127.0.0.1:5432? see --admin-url)")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

/// Nearest-rank percentile (`q` in 0..=1); NaN when empty.
fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v >= 1000.0 {
        format!("{:.2} s", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.0} ms")
    } else if v >= 1.0 {
        format!("{v:.1} ms")
    } else {
        format!("{:.0} µs", v * 1e3)
    }
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into())
}

/// The generator's events with the reference's 20 features: half the requests of
/// the six busiest catalog features become `<feature>_beta`.
struct FeatureSplit {
    split: Vec<(&'static str, &'static str)>,
}

impl FeatureSplit {
    fn new() -> FeatureSplit {
        let mut by_share: Vec<_> = FEATURES.iter().collect();
        by_share.sort_by(|a, b| b.share.total_cmp(&a.share));
        let split = by_share
            .into_iter()
            .take(SPLIT_FEATURES)
            .map(|f| {
                let beta: &'static str = Box::leak(format!("{}_beta", f.name).into_boxed_str());
                (f.name, beta)
            })
            .collect();
        FeatureSplit { split }
    }

    fn features(&self) -> usize {
        FEATURES.len() + self.split.len()
    }

    fn apply(&self, mut e: SimEvent) -> SimEvent {
        if let Some((_, beta)) = self.split.iter().find(|(f, _)| *f == e.feature) {
            // FNV-1a of the request id: deterministic, independent of everything else.
            let h = e.request_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            if h & 1 == 1 {
                e.feature = Cow::Borrowed(beta);
            }
        }
        e
    }
}

fn generator(rate: f64, shape: RateShape, seed: u64) -> Result<Generator> {
    Ok(Generator::new(GeneratorConfig {
        seed,
        users: USERS,
        base_rate: rate,
        shape,
        noise: if shape == RateShape::Flat { 0.0 } else { 1.0 },
        spike: None,
        run_id: Utc::now().timestamp_micros() as u64 ^ seed,
    })?)
}

/// Drops and recreates burnrate_bench and fills it with the reference data set.
async fn load(args: &Args, q: &Queries, admin: &Client, url: &str) -> Result<Duration> {
    simple(admin, &q.db("drop_database", BENCH_DB)?).await?;
    simple(admin, &q.db("create_database", BENCH_DB)?).await?;
    let target = ConnectTarget::from_url(url)?;
    schema::init(&target, TABLE).await?;
    let client = connect(url).await?;
    let table = TableName::parse(TABLE)?;
    let now = Utc::now();
    let rate = args.rows as f64 / (DAYS * 86_400) as f64;
    let mut generator = generator(rate, RateShape::Seasonal, SEED)?;
    let split = FeatureSplit::new();
    let started = Instant::now();
    let mut events = generator
        .events_between(now - ChronoDuration::days(DAYS), now)
        .map(|e| split.apply(e))
        .peekable();
    let mut written = 0u64;
    let mut next_report = 1_000_000u64;
    while events.peek().is_some() {
        let chunk = events.by_ref().take(COPY_CHUNK_ROWS);
        written += writer::copy_events(&client, &table, chunk).await?.rows;
        if written >= next_report {
            eprintln!(
                "  loaded {} rows ({:.0} s)",
                group(written),
                started.elapsed().as_secs_f64()
            );
            next_report += 1_000_000;
        }
    }
    let took = started.elapsed();
    eprintln!(
        "  loaded {} rows in {:.1} s; VACUUM ANALYZE",
        group(written),
        took.as_secs_f64()
    );
    simple(&client, q.get("vacuum_analyze")?).await?;
    Ok(took)
}

/// Wall times of a statement over `runs` runs (the data is in memory after the
/// load or the first run: every figure is a warm-cache figure).
async fn time_query(client: &Client, sql: &str, runs: usize) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        client
            .simple_query(sql)
            .await
            .wrap_err_with(|| format!("running {}", first_line(sql)))?;
        out.push(ms(t.elapsed()));
    }
    Ok(out)
}

/// Environment of a burnrate process: the bench database, and its own config and
/// state directories (no user config is read, its log goes there).
fn burnrate_env(cmd: &mut Command, url: &str, home: &Path) {
    burnrate_env_in(cmd, url, home, home);
}

/// As `burnrate_env`, with the state directory (log, and what a restart finds)
/// apart from the config directory.
fn burnrate_env_in(cmd: &mut Command, url: &str, state: &Path, config: &Path) {
    cmd.env("DATABASE_URL", url)
        .env("XDG_STATE_HOME", state)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("BURNRATE_CONFIG")
        .env_remove("RUST_LOG");
}

/// One `burnrate snapshot --json` run.
struct SnapshotRun {
    wall: Duration,
    /// User + system CPU of the process: the rest of the wall time is waiting,
    /// mostly for PostgreSQL.
    cpu: Duration,
    user: Duration,
    system: Duration,
    max_rss_kib: u64,
    /// CPU of every PostgreSQL process on the machine meanwhile (other clients'
    /// included), when /proc tells.
    server_cpu: Option<Duration>,
    /// The JSON printed, when asked for.
    json: Option<serde_json::Value>,
}

/// Runs `burnrate snapshot --json` once: wall time, CPU time and peak RSS (wait4).
fn snapshot_once(burnrate: &Path, url: &str, home: &Path) -> Result<SnapshotRun> {
    snapshot_run(burnrate, url, home, home, false)
}

/// `snapshot_once` with its state and config directories apart; with `keep_json`,
/// its output parsed.
fn snapshot_run(
    burnrate: &Path,
    url: &str,
    state: &Path,
    config: &Path,
    keep_json: bool,
) -> Result<SnapshotRun> {
    let out_path = state.join("snapshot.json");
    let stdout = if keep_json {
        Stdio::from(
            std::fs::File::create(&out_path)
                .wrap_err_with(|| format!("creating {}", out_path.display()))?,
        )
    } else {
        Stdio::null()
    };
    let mut cmd = Command::new(burnrate);
    cmd.args(["snapshot", "--json"])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::inherit());
    burnrate_env_in(&mut cmd, url, state, config);
    let server0 = postgres_cpu_ticks();
    let started = Instant::now();
    let child = cmd
        .spawn()
        .wrap_err_with(|| format!("starting {}", burnrate.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 reaps exactly our child, which
    // `Child` is then never asked to wait for (it is only dropped).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let took = started.elapsed();
    let server1 = postgres_cpu_ticks();
    drop(child);
    if r != pid {
        bail!("waiting for burnrate snapshot failed");
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("burnrate snapshot --json failed (status {status}); its error is above");
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    let json = if keep_json {
        let text = std::fs::read_to_string(&out_path)
            .wrap_err_with(|| format!("reading {}", out_path.display()))?;
        Some(
            serde_json::from_str(&text)
                .wrap_err("burnrate snapshot --json printed something that is not JSON")?,
        )
    } else {
        None
    };
    Ok(SnapshotRun {
        wall: took,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        user: tv(usage.ru_utime),
        system: tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss.max(0) as u64,
        server_cpu: server0.zip(server1).map(|(a, b)| {
            Duration::from_secs_f64(b.saturating_sub(a) as f64 / clock_ticks_per_sec())
        }),
        json,
    })
}

/// The PostgreSQL server's postmaster, when it runs on this machine and the bench
/// can read its data directory (see `find_postmaster`).
static POSTMASTER: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Finds the postmaster of the server `client` is connected to: the first line of
/// `postmaster.pid` in its data directory (a local server only).
async fn find_postmaster(client: &Client) -> Option<u32> {
    let dir = simple(client, "SELECT current_setting('data_directory')")
        .await
        .ok()?
        .first()
        .cloned()
        .flatten()?;
    let pid_file = std::fs::read_to_string(Path::new(&dir).join("postmaster.pid")).ok()?;
    let pid: u32 = pid_file.lines().next()?.trim().parse().ok()?;
    std::fs::metadata(format!("/proc/{pid}/stat")).ok()?;
    Some(pid)
}

/// CPU of the server: user + system time, and reaped children's, of its
/// postmaster and of every process it started (backends, parallel workers,
/// background processes), in clock ticks. A backend that exits moves its time
/// into the postmaster's children's time, so the sum only grows. Other clients'
/// work is included.
fn postgres_cpu_ticks() -> Option<u64> {
    let postmaster = *POSTMASTER.get()?;
    // (parent pid, utime + stime + cutime + cstime) of a process.
    let read = |pid: &str| -> Option<(u32, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
        // ppid is field 4 of stat (1 after ')'); utime, stime, cutime, cstime
        // are fields 14-17 (11-14 after ')').
        let ppid = f.get(1)?.parse().ok()?;
        let t = (11..=14)
            .map(|i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
            .sum::<Option<u64>>()?;
        Some((ppid, t))
    };
    let mut total = read(&postmaster.to_string())?.1;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Some((ppid, t)) = read(pid)
            && ppid == postmaster
        {
            total += t;
        }
    }
    Some(total)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, so 11 and 12 after ')'.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// What `burnrate watch` did in a pseudo-terminal.
struct WatchRun {
    to_live: Duration,
    cpu_percent: f64,
    idle_secs: f64,
    hwm_kib: u64,
}

/// `burnrate watch` in a 160x48 pseudo-terminal, its screen kept by a vt100 parser.
struct PtyWatch {
    started: Instant,
    pid: u32,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    writer: Box<dyn Write + Send>,
    master: Box<dyn portable_pty::MasterPty + Send>,
    reader_thread: std::thread::JoinHandle<()>,
    parser: vt100::Parser,
}

impl PtyWatch {
    /// Starts `burnrate watch` with the bench database and these directories.
    fn spawn(burnrate: &Path, url: &str, state: &Path, config: &Path) -> Result<PtyWatch> {
        use portable_pty::{CommandBuilder, PtySize, native_pty_system};
        let (rows, cols) = (48u16, 160u16);
        let pty = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|e| eyre!("opening a pseudo-terminal: {e}"))?;
        let mut cmd = CommandBuilder::new(burnrate);
        cmd.arg("watch");
        cmd.env("TERM", "xterm-256color");
        cmd.env("DATABASE_URL", url);
        cmd.env("XDG_STATE_HOME", state);
        cmd.env("XDG_CONFIG_HOME", config);
        cmd.env_remove("BURNRATE_CONFIG");
        cmd.env_remove("RUST_LOG");
        let started = Instant::now();
        let child = pty
            .slave
            .spawn_command(cmd)
            .map_err(|e| eyre!("starting burnrate watch: {e}"))?;
        drop(pty.slave);
        let pid = child
            .process_id()
            .ok_or_else(|| eyre!("burnrate watch has no process id"))?;
        let mut reader = pty
            .master
            .try_clone_reader()
            .map_err(|e| eyre!("reading the pseudo-terminal: {e}"))?;
        let writer = pty
            .master
            .take_writer()
            .map_err(|e| eyre!("writing to the pseudo-terminal: {e}"))?;
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let reader_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Ok(PtyWatch {
            started,
            pid,
            child,
            rx,
            writer,
            master: pty.master,
            reader_thread,
            parser: vt100::Parser::new(rows, cols, 0),
        })
    }

    /// Waits up to `wait` for output and feeds all of it to the screen.
    fn pump(&mut self, wait: Duration) {
        if let Ok(bytes) = self.rx.recv_timeout(wait) {
            self.parser.process(&bytes);
            while let Ok(more) = self.rx.try_recv() {
                self.parser.process(&more);
            }
        }
    }

    /// Reads and discards output, so the dashboard never blocks on a full pty.
    fn drain(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }

    fn screen(&self) -> String {
        self.parser.screen().contents()
    }

    /// Pumps until `done` holds for the screen; the time since the spawn.
    fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&str) -> bool,
    ) -> Result<Duration> {
        let deadline = self.started + timeout;
        loop {
            self.pump(Duration::from_millis(20));
            let screen = self.screen();
            if done(&screen) {
                return Ok(self.started.elapsed());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("burnrate watch exited early ({status:?}); screen:\n{screen}");
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!(
                    "burnrate watch did not reach {what} within {} s; screen:\n{screen}",
                    timeout.as_secs()
                );
            }
        }
    }

    /// Keeps the terminal drained for `d`.
    fn idle(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.drain();
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Quits with `q` (killed after 10 s).
    fn quit(mut self) {
        let _ = self.writer.write_all(b"q");
        let _ = self.writer.flush();
        let quit_by = Instant::now() + Duration::from_secs(10);
        loop {
            self.drain();
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if Instant::now() > quit_by {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(self.writer);
        drop(self.master);
        let _ = self.reader_thread.join();
    }
}

/// Starts the dashboard in a 160x48 pseudo-terminal, waits until its status bar
/// says Live (history loaded), then measures its CPU over `idle` with no new rows
/// and its peak RSS; quits it with `q`.
fn watch_idle(burnrate: &Path, url: &str, home: &Path, idle: Duration) -> Result<WatchRun> {
    let mut w = PtyWatch::spawn(burnrate, url, home, home)?;
    // The status bar says Live once connected; the history is in when the
    // loading screen has gone too.
    let to_live = w.wait_for("Live", Duration::from_secs(900), |screen| {
        screen.contains(" Live ") && !screen.contains("Loading history")
    })?;
    // Let the first rebuilds after the backfill settle, then measure.
    w.idle(Duration::from_secs(3));
    let pid = w.pid;
    let t0 = Instant::now();
    let c0 = cpu_ticks(pid).ok_or_else(|| eyre!("cannot read /proc/{pid}/stat"))?;
    w.idle(idle);
    let c1 = cpu_ticks(pid).ok_or_else(|| eyre!("cannot read /proc/{pid}/stat"))?;
    let idle_secs = t0.elapsed().as_secs_f64();
    let hwm_kib = vm_hwm_kib(pid).unwrap_or(0);
    let cpu_percent = (c1 - c0) as f64 / clock_ticks_per_sec() / idle_secs * 100.0;
    w.quit();
    Ok(WatchRun {
        to_live,
        cpu_percent,
        idle_secs,
        hwm_kib,
    })
}

/// The channel of the NOTIFY phase (the trigger exists only during it).
const NOTIFY_CHANNEL: &str = "burnrate_events";

fn source_options() -> SourceOptions {
    SourceOptions::new(
        &DatabaseConfig {
            table: TABLE.into(),
            // LISTEN from the start; notifications flow only once the freshness
            // phase with NOTIFY has added the trigger.
            notify_channel: Some(NOTIFY_CHANNEL.into()),
            ..DatabaseConfig::default()
        },
        StoreConfig::default(),
    )
}

/// The store as the source fills it, and when tail rows went in.
struct Sink {
    store: Store,
    /// Rows read by the tail since the start.
    tail_rows: u64,
    /// (when applied, tail_rows after it), one entry per non-empty tail message.
    applied: Vec<(Instant, u64)>,
}

impl Sink {
    fn apply(&mut self, msg: SourceMsg) {
        match msg {
            SourceMsg::Backfill { batch, .. } => self.store.apply(&batch, Utc::now()),
            SourceMsg::Tail { batch, .. } => {
                self.store.apply(&batch, Utc::now());
                if batch.rows > 0 {
                    self.tail_rows += batch.rows;
                    self.applied.push((Instant::now(), self.tail_rows));
                }
            }
            SourceMsg::Status(_) | SourceMsg::MonthSoFar { .. } => {}
        }
    }
}

/// One backfill or poll, its messages applied to the store as they arrive.
async fn step(source: &mut PgSource, sink: &mut Sink, backfill: bool) -> Result<()> {
    let (tx, mut rx) = mpsc::channel(64);
    let producer = async move {
        if backfill {
            source.backfill(&tx, Utc::now()).await
        } else {
            source.poll(&tx).await.map(|_| ())
        }
    };
    let consumer = async {
        while let Some(msg) = rx.recv().await {
            sink.apply(msg);
        }
    };
    let (result, ()) = tokio::join!(producer, consumer);
    Ok(result?)
}

struct WriterResult {
    rows: u64,
    elapsed: Duration,
    /// (commit returned, rows written so far), one per transaction.
    log: Vec<(Instant, u64)>,
}

/// Writes at a flat `rate` rows/s for `run_for`, one transaction every 50 ms
/// (multi-row INSERTs, or COPY when `copy`), from the simulator as `simulate` does.
async fn write_at(
    url: String,
    rate: f64,
    run_for: Duration,
    copy: bool,
    seed: u64,
) -> Result<WriterResult> {
    let target = ConnectTarget::from_url(&url)?;
    let mut client = target.connect().await?;
    let table = TableName::parse(TABLE)?;
    let mut generator = generator(rate, RateShape::Flat, seed)?;
    let split = FeatureSplit::new();
    let mut tick = tokio::time::interval(WRITE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut last = Utc::now();
    let mut rows = 0u64;
    let mut log = Vec::new();
    loop {
        tick.tick().await;
        let done = started.elapsed() >= run_for;
        let t = Utc::now();
        let batch: Vec<SimEvent> = generator
            .events_between(last, t)
            .map(|e| split.apply(e))
            .collect();
        last = t;
        let written = if copy {
            writer::copy_events(&client, &table, batch).await?
        } else {
            writer::insert_events(&mut client, &table, &batch).await?
        };
        if written.rows > 0 {
            rows += written.rows;
            log.push((Instant::now(), rows));
        }
        if done {
            break;
        }
    }
    Ok(WriterResult {
        rows,
        elapsed: started.elapsed(),
        log,
    })
}

/// A tailing phase: a writer at `rate` for `run_for` while the source polls every
/// refresh interval (as the dashboard's source task does: poll, then wait).
struct Phase {
    rate: f64,
    achieved: f64,
    /// Wall time of each poll, with the rows it read.
    polls: Vec<(f64, u64)>,
    /// Commit to in the aggregates, per writer transaction, in order (ms).
    latencies: Vec<f64>,
    /// Writer rows the tail had not read when the phase ended.
    unread: u64,
    /// After the writer stopped, until the tail had read everything.
    drain_ms: f64,
}

impl Phase {
    fn p(&self, q: f64) -> f64 {
        percentile(&self.latencies, q)
    }
    /// Median freshness of the first and last thirds of the run.
    fn thirds(&self) -> (f64, f64) {
        let n = self.latencies.len();
        if n < 3 {
            return (f64::NAN, f64::NAN);
        }
        (
            median(&self.latencies[..n / 3]),
            median(&self.latencies[n - n / 3..]),
        )
    }
    /// The tail kept up: it read everything within a refresh interval and a few
    /// polls' time after the writer stopped, and freshness did not grow.
    fn kept_up(&self, interval: Duration) -> bool {
        let (first, last) = self.thirds();
        self.unread == 0
            && self.drain_ms <= ms(interval) * 2.0 + 1000.0
            && last <= first + ms(interval) / 2.0
            && self.achieved >= self.rate * 0.9
    }
}

async fn drain(source: &mut PgSource, sink: &mut Sink) -> Result<()> {
    for _ in 0..200 {
        let before = sink.tail_rows;
        step(source, sink, false).await?;
        if sink.tail_rows == before {
            return Ok(());
        }
    }
    bail!("the tail did not catch up with earlier writes")
}

/// Tail polls in the steady state, after a first one: twenty with no new rows
/// (their times in ms), then a writer at the data set's own rate (`rows` over
/// `days`, at least one a second) for 10 s (20 s without `quick`).
struct SteadyPolls {
    idle: Vec<f64>,
    ref_rate: f64,
    ref_phase: Phase,
}

async fn steady_polls(
    source: &mut PgSource,
    sink: &mut Sink,
    url: &str,
    rows: u64,
    days: i64,
    quick: bool,
    seed: u64,
) -> Result<SteadyPolls> {
    step(source, sink, false).await?;
    let mut idle = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        step(source, sink, false).await?;
        idle.push(ms(t.elapsed()));
    }
    let ref_rate = (rows as f64 / (days * 86_400) as f64).max(1.0);
    let run_for = Duration::from_secs(if quick { 10 } else { 20 });
    let ref_phase = tail_phase(source, sink, url, ref_rate, run_for, false, seed, None).await?;
    Ok(SteadyPolls {
        idle,
        ref_rate,
        ref_phase,
    })
}

#[allow(clippy::too_many_arguments)]
async fn tail_phase(
    source: &mut PgSource,
    sink: &mut Sink,
    url: &str,
    rate: f64,
    run_for: Duration,
    copy: bool,
    seed: u64,
    wake: Option<&tokio::sync::Notify>,
) -> Result<Phase> {
    let interval = DatabaseConfig::default().refresh_interval;
    drain(source, sink).await?;
    let base = sink.tail_rows;
    let applied_from = sink.applied.len();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let url = url.to_string();
        let done = done.clone();
        tokio::spawn(async move {
            let r = write_at(url, rate, run_for, copy, seed).await;
            done.store(true, Ordering::SeqCst);
            r
        })
    };
    let mut writer = Some(writer);
    let mut result: Option<WriterResult> = None;
    let mut stopped_at = None;
    let mut polls = Vec::new();
    loop {
        let before = sink.tail_rows;
        let t = Instant::now();
        step(source, sink, false).await?;
        polls.push((ms(t.elapsed()), sink.tail_rows - before));
        if done.load(Ordering::SeqCst)
            && let Some(w) = writer.take()
        {
            result = Some(w.await??);
            stopped_at = Some(Instant::now());
        }
        if let (Some(r), Some(at)) = (&result, stopped_at)
            && (sink.tail_rows - base >= r.rows || at.elapsed() > Duration::from_secs(120))
        {
            break;
        }
        // The schedule of `source::run`: a fixed rate from the start of each poll,
        // or at once on a notification, polls at least MIN_POLL_GAP apart.
        let wait = interval.saturating_sub(t.elapsed());
        match wake {
            None => tokio::time::sleep(wait).await,
            Some(w) => {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = w.notified() => {
                        tokio::time::sleep_until((t + MIN_POLL_GAP).into()).await;
                    }
                }
            }
        }
    }
    let (Some(w), Some(stopped_at)) = (result, stopped_at) else {
        bail!("the writer did not finish");
    };
    let read = sink.tail_rows - base;
    let drain_ms = sink.applied[applied_from..]
        .iter()
        .find(|(_, r)| r - base >= w.rows)
        .map_or(f64::INFINITY, |(at, _)| {
            ms(at.saturating_duration_since(stopped_at))
        });
    let applied = &sink.applied[applied_from..];
    let latencies = w
        .log
        .iter()
        .filter_map(|&(committed, written)| {
            let j = applied.partition_point(|&(_, r)| r - base < written);
            applied
                .get(j)
                .map(|&(at, _)| ms(at.saturating_duration_since(committed)))
        })
        .collect();
    Ok(Phase {
        rate,
        achieved: w.rows as f64 / w.elapsed.as_secs_f64(),
        polls,
        latencies,
        unread: w.rows.saturating_sub(read),
        drain_ms,
    })
}

/// Drill-down frame: every user over 30 days, the largest first; median and p99
/// of `iters` frames drawn through ratatui's TestBackend.
struct Render {
    rows: usize,
    build_ms: f64,
    frame_ms: Vec<f64>,
}

fn render_bench(store: &Store, iters: usize, endpoint: &str) -> Result<Render> {
    let now = Utc::now();
    let nav = Nav {
        levels: vec![Level {
            path: Vec::new(),
            dim: Dim::User,
            ..Level::default()
        }],
        window: Window::Days30,
        ..Nav::default()
    };
    let level = nav.levels[0].clone();
    let mut builds = Vec::new();
    let mut view = build_level(store, &nav, &level, now);
    for _ in 0..5 {
        let t = Instant::now();
        view = build_level(store, &nav, &level, now);
        arrange(&mut view, &nav, &level);
        builds.push(ms(t.elapsed()));
    }
    if let Some(name) = view.row_at(0).map(|r| r.name.clone()) {
        view.chart = Some(chart(store, &view, &name, now));
    }
    let overview = build_overview(
        store,
        now,
        None,
        &DetectParams::default(),
        &mut DetectorState::default(),
        burnrate::app::progress::Coverage::Complete,
    );
    let status = StatusView {
        endpoint: endpoint.to_string(),
        connection: Connection::Live,
        mode: TailMode::TxWatermark,
        last_refresh: Some(now),
        rows_read: store.intake().rows,
        ..StatusView::default()
    };
    let top = TopState::Closed;
    let screen = Screen {
        overview: &overview,
        status: &status,
        backfill: None,
        selected: 0,
        color: true,
        help: None,
        help_scroll: 0,
        anomaly_log: None,
        drill: Some(&view),
        top: &top,
        window: Window::Days30,
        alerts: None,
    };
    let mut terminal = Terminal::new(TestBackend::new(160, 48))?;
    let mut frames = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        terminal.draw(|f| burnrate::ui::draw(f, &screen))?;
        frames.push(ms(t.elapsed()));
    }
    let text = format!("{:?}", terminal.backend().buffer());
    if !text.contains("user_") {
        bail!("the drill-down frame shows no user rows");
    }
    Ok(Render {
        rows: view.rows.len(),
        build_ms: median(&builds),
        frame_ms: frames,
    })
}

/// One line of the results table.
struct Line {
    figure: String,
    value: String,
    against: String,
    ratio: String,
    target: String,
    met: String,
}

fn met(ok: bool) -> String {
    if ok { "met".into() } else { "NOT met".into() }
}

fn ratio(a: f64, b: f64) -> String {
    if !(a.is_finite() && b.is_finite()) || b == 0.0 {
        return "n/a".into();
    }
    let r = a / b;
    if r >= 100.0 {
        format!("{r:.0}x")
    } else {
        format!("{r:.2}x")
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    color_eyre::install()?;
    let args = Args::parse()?;
    let q = Queries::load(&args.sql)?;
    if !args.burnrate.is_file() {
        bail!(
            "{} not found: build it first (`cargo build --release`), or use scripts/bench",
            args.burnrate.display()
        );
    }
    // Absolute: the pseudo-terminal's spawner looks a relative name up in PATH.
    let burnrate = std::fs::canonicalize(&args.burnrate)?;
    let args = Args { burnrate, ..args };
    if args.highcard {
        return highcard(&args, &q).await;
    }
    let url = bench_url(&args.admin_url, BENCH_DB)?;
    let home = tempfile::tempdir()?;
    let runs = args.runs();
    let load_start = loadavg();
    let admin = connect(&args.admin_url).await?;
    let version = simple(&admin, q.get("server_version")?).await?;
    let pg_version = version.first().cloned().flatten().unwrap_or_default();
    let shared_buffers = version.get(1).cloned().flatten().unwrap_or_default();

    eprintln!("== data set");
    let load_time = if args.reuse {
        let exists = simple(&admin, &q.db("database_exists", BENCH_DB)?).await?;
        if exists.first().cloned().flatten().as_deref() != Some("1") {
            bail!("--reuse: there is no burnrate_bench database yet; run without --reuse");
        }
        None
    } else {
        Some(load(&args, &q, &admin, &url).await?)
    };
    let client = connect(&url).await?;
    let ds = simple(&client, q.get("data_set")?).await?;
    let col = |i: usize| ds.get(i).cloned().flatten().unwrap_or_default();
    let rows: u64 = col(0).parse().unwrap_or(0);
    let data_set = format!(
        "{} rows, {} users, {} features, {} models, {} tenants, {} regions, {} to {}, {} on disk",
        group(rows),
        col(1),
        col(2),
        col(3),
        col(4),
        col(5),
        col(6),
        col(7),
        col(8)
    );
    eprintln!("  {data_set}");
    if args.load_only {
        return Ok(());
    }
    if !args.reuse && FeatureSplit::new().features() != 20 {
        eprintln!("  (the catalog no longer gives 20 features)");
    }

    eprintln!("== seed queries (reconstructed) and the bare scan, {runs} runs each");
    let mut seed = BTreeMap::new();
    for name in [
        "seed_cost_by_feature_per_day",
        "seed_top_cost_drivers_week",
        "seed_cost_per_request_per_day",
        "bare_scan",
    ] {
        let t = time_query(&client, q.get(name)?, runs).await?;
        eprintln!("  {name}: median {}", fmt_ms(median(&t)));
        seed.insert(name, median(&t));
    }
    let seed_feature = seed["seed_cost_by_feature_per_day"];
    let seed_all =
        seed_feature + seed["seed_top_cost_drivers_week"] + seed["seed_cost_per_request_per_day"];
    let bare = seed["bare_scan"];

    eprintln!("== cold start: burnrate snapshot --json, {runs} runs");
    let mut cold = Vec::new();
    let mut cold_cpu = Vec::new();
    let mut snap_rss = 0u64;
    for _ in 0..runs {
        let r = snapshot_once(&args.burnrate, &url, home.path())?;
        eprintln!(
            "  {} wall, {} CPU in the process, max RSS {} MiB",
            fmt_ms(ms(r.wall)),
            fmt_ms(ms(r.cpu)),
            r.max_rss_kib / 1024
        );
        cold.push(ms(r.wall));
        cold_cpu.push(ms(r.cpu));
        snap_rss = snap_rss.max(r.max_rss_kib);
    }
    let cold_ms = median(&cold);
    let cold_cpu_ms = median(&cold_cpu);

    eprintln!("== cold start in rollup mode: db init --rollup, then snapshot with database.rollup");
    let t = Instant::now();
    let mut init = Command::new(&args.burnrate);
    init.args(["db", "init", "--rollup"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    burnrate_env(&mut init, &url, home.path());
    if !init.status()?.success() {
        bail!("burnrate db init --rollup failed; its error is above");
    }
    let first_roll_ms = ms(t.elapsed());
    // A home of its own: only these runs read the rollup.
    let rollup_home = tempfile::tempdir()?;
    std::fs::create_dir_all(rollup_home.path().join("burnrate"))?;
    std::fs::write(
        rollup_home.path().join("burnrate/burnrate.toml"),
        "[database]\nrollup = true\n",
    )?;
    let mut cold_rollup = Vec::new();
    let mut rollup_rss = 0u64;
    for _ in 0..runs {
        let r = snapshot_once(&args.burnrate, &url, rollup_home.path())?;
        eprintln!(
            "  first roll {}; cold start {} wall, {} CPU, max RSS {} MiB",
            fmt_ms(first_roll_ms),
            fmt_ms(ms(r.wall)),
            fmt_ms(ms(r.cpu)),
            r.max_rss_kib / 1024
        );
        cold_rollup.push(ms(r.wall));
        rollup_rss = rollup_rss.max(r.max_rss_kib);
    }
    let cold_rollup_ms = median(&cold_rollup);

    let idle_for = Duration::from_secs(if args.quick { 20 } else { 60 });
    eprintln!(
        "== burnrate watch in a pseudo-terminal: idle CPU over {} s, peak RSS",
        idle_for.as_secs()
    );
    let watch = watch_idle(&args.burnrate, &url, home.path(), idle_for)?;
    eprintln!(
        "  Live after {}, CPU {:.2}% of a core over {:.0} s, VmHWM {} MiB",
        fmt_ms(ms(watch.to_live)),
        watch.cpu_percent,
        watch.idle_secs,
        watch.hwm_kib / 1024
    );

    eprintln!("== in-process backfill (library), then the drill-down frame");
    let target = ConnectTarget::from_url(&url)?;
    let endpoint = target.endpoint.clone();
    let t = Instant::now();
    let mut source = PgSource::new(target.clone(), source_options())?;
    let wake = Arc::new(tokio::sync::Notify::new());
    source.wake_on_notify(wake.clone());
    let mut sink = Sink {
        store: Store::new(StoreConfig::default(), Utc::now()),
        tail_rows: 0,
        applied: Vec::new(),
    };
    step(&mut source, &mut sink, true).await?;
    let backfill_ms = ms(t.elapsed());
    eprintln!(
        "  backfill {} ({} users in the store)",
        fmt_ms(backfill_ms),
        sink.store.distinct_names(Dim::User)
    );
    let iters = if args.quick { 200 } else { 1000 };
    let render = render_bench(&sink.store, iters, &endpoint)?;
    let frame_ms = median(&render.frame_ms);
    eprintln!(
        "  {} rows; frame median {} p99 {}; level build {}",
        group(render.rows as u64),
        fmt_ms(frame_ms),
        fmt_ms(percentile(&render.frame_ms, 0.99)),
        fmt_ms(render.build_ms)
    );

    eprintln!("== steady state: tail polls");
    let polls = steady_polls(&mut source, &mut sink, &url, rows, DAYS, args.quick, 101).await?;
    let (ref_rate, ref_phase) = (polls.ref_rate, polls.ref_phase);
    let idle_poll = median(&polls.idle);
    eprintln!("  no new rows: median poll {}", fmt_ms(idle_poll));
    let ref_poll = median(&ref_phase.polls.iter().map(|p| p.0).collect::<Vec<_>>());
    eprintln!(
        "  at the data set's own rate ({ref_rate:.1} rows/s): median poll {}",
        fmt_ms(ref_poll)
    );

    eprintln!("== freshness with a writer at 5,000 rows/s");
    let fresh = tail_phase(
        &mut source,
        &mut sink,
        &url,
        FRESHNESS_RATE,
        Duration::from_secs(if args.quick { 12 } else { 30 }),
        false,
        102,
        None,
    )
    .await?;
    let busy_polls: Vec<f64> = fresh
        .polls
        .iter()
        .filter(|p| p.1 > 0)
        .map(|p| p.0)
        .collect();
    let busy_poll = median(&busy_polls);
    let busy_rows = median(
        &fresh
            .polls
            .iter()
            .filter(|p| p.1 > 0)
            .map(|p| p.1 as f64)
            .collect::<Vec<_>>(),
    );
    eprintln!(
        "  writer {:.0} rows/s; freshness p50 {} p99 {}; median poll {} for {:.0} rows",
        fresh.achieved,
        fmt_ms(fresh.p(0.5)),
        fmt_ms(fresh.p(0.99)),
        fmt_ms(busy_poll),
        busy_rows
    );

    eprintln!("== highest insert rate the tail keeps up with (COPY writer)");
    let interval = DatabaseConfig::default().refresh_interval;
    let steps: &[f64] = if args.quick {
        &[10_000.0, 50_000.0]
    } else {
        &[10_000.0, 25_000.0, 50_000.0, 100_000.0]
    };
    let mut kept = None::<f64>;
    let mut writer_limited = false;
    let mut step_lines = Vec::new();
    for (i, &rate) in steps.iter().enumerate() {
        let ph = tail_phase(
            &mut source,
            &mut sink,
            &url,
            rate,
            Duration::from_secs(if args.quick { 8 } else { 15 }),
            true,
            200 + i as u64,
            None,
        )
        .await?;
        let (first, last) = ph.thirds();
        let ok = ph.kept_up(interval);
        let line = format!(
            "  offered {:.0} rows/s, written {:.0} rows/s; freshness median first third {} last third {}; \
             caught up {} after the writer stopped; {}",
            rate,
            ph.achieved,
            fmt_ms(first),
            fmt_ms(last),
            fmt_ms(ph.drain_ms),
            if ok {
                "kept up"
            } else if ph.achieved < rate * 0.9
                && ph.unread == 0
                && last <= first + ms(interval) / 2.0
            {
                "writer could not reach the rate"
            } else {
                "fell behind"
            }
        );
        eprintln!("{line}");
        step_lines.push(line.trim().to_string());
        if ok {
            kept = Some(ph.achieved);
        } else {
            writer_limited =
                ph.achieved < rate * 0.9 && ph.unread == 0 && last <= first + ms(interval) / 2.0;
            if writer_limited {
                kept = Some(kept.unwrap_or(0.0).max(ph.achieved));
            }
            break;
        }
    }
    eprintln!("== freshness with the NOTIFY wake-up (db init --notify), writer at 5,000 rows/s");
    notify::enable_notify(&ConnectTarget::from_url(&url)?, TABLE, Some(NOTIFY_CHANNEL)).await?;
    let notified = tail_phase(
        &mut source,
        &mut sink,
        &url,
        FRESHNESS_RATE,
        Duration::from_secs(if args.quick { 12 } else { 30 }),
        false,
        103,
        Some(&wake),
    )
    .await?;
    eprintln!(
        "  writer {:.0} rows/s; freshness p50 {} p99 {}",
        notified.achieved,
        fmt_ms(notified.p(0.5)),
        fmt_ms(notified.p(0.99)),
    );
    let load_end = loadavg();

    // The table.
    let refresh_s = interval.as_secs_f64();
    let lines = vec![
        Line {
            figure: "cold start (`snapshot --json` wall time)".into(),
            value: fmt_ms(cold_ms),
            against: format!(
                "seed cost-by-feature query {}; bare scan {}",
                fmt_ms(seed_feature),
                fmt_ms(bare)
            ),
            ratio: format!(
                "{} of the seed query; {} of the bare scan",
                ratio(cold_ms, seed_feature),
                ratio(cold_ms, bare)
            ),
            target: "<= seed cost-by-feature query; aim 2x bare scan".into(),
            met: format!(
                "{}; aim {}",
                met(cold_ms <= seed_feature),
                if cold_ms <= 2.0 * bare {
                    "met"
                } else {
                    "not met"
                }
            ),
        },
        Line {
            figure: "cold start in rollup mode (`db init --rollup` once, then `snapshot --json`)"
                .into(),
            value: format!(
                "{} (first roll {}; peak RSS {} MiB)",
                fmt_ms(cold_rollup_ms),
                fmt_ms(first_roll_ms),
                rollup_rss / 1024
            ),
            against: format!("seed cost-by-feature query {}", fmt_ms(seed_feature)),
            ratio: format!("{} of the seed query", ratio(cold_rollup_ms, seed_feature)),
            target: "<= seed cost-by-feature query".into(),
            met: met(cold_rollup_ms <= seed_feature),
        },
        Line {
            figure: "cold start vs the seed dashboard (3 queries once)".into(),
            value: fmt_ms(cold_ms),
            against: format!("3 seed queries {}", fmt_ms(seed_all)),
            ratio: ratio(cold_ms, seed_all),
            target: "(information)".into(),
            met: "-".into(),
        },
        Line {
            figure: format!("database time per refresh, data set's rate ({ref_rate:.1} rows/s)"),
            value: fmt_ms(ref_poll),
            against: format!("3 seed queries {}", fmt_ms(seed_all)),
            ratio: format!("{} less", ratio(seed_all, ref_poll)),
            target: ">= 500x less".into(),
            met: met(seed_all / ref_poll >= 500.0),
        },
        Line {
            figure: "database time per refresh, no new rows".into(),
            value: fmt_ms(idle_poll),
            against: format!("3 seed queries {}", fmt_ms(seed_all)),
            ratio: format!("{} less", ratio(seed_all, idle_poll)),
            target: ">= 500x less".into(),
            met: met(seed_all / idle_poll >= 500.0),
        },
        Line {
            figure: format!("database time per refresh, 5,000 rows/s ({busy_rows:.0} rows a poll)"),
            value: fmt_ms(busy_poll),
            against: format!("3 seed queries {}", fmt_ms(seed_all)),
            ratio: format!("{} less", ratio(seed_all, busy_poll)),
            target: "(information)".into(),
            met: "-".into(),
        },
        Line {
            figure: "freshness p50 / p99, writer at 5,000 rows/s".into(),
            value: format!("{} / {}", fmt_ms(fresh.p(0.5)), fmt_ms(fresh.p(0.99))),
            against: format!("refresh interval {refresh_s:.0} s + 100 ms"),
            ratio: ratio(fresh.p(0.99), ms(interval) + 100.0),
            target: "p99 <= refresh interval + 100 ms".into(),
            met: met(fresh.p(0.99) <= ms(interval) + 100.0),
        },
        Line {
            figure: "freshness p50 / p99 with the NOTIFY wake-up, writer at 5,000 rows/s".into(),
            value: format!("{} / {}", fmt_ms(notified.p(0.5)), fmt_ms(notified.p(0.99))),
            against: "250 ms".into(),
            ratio: ratio(notified.p(0.99), 250.0),
            target: "p99 < 250 ms".into(),
            met: met(notified.p(0.99) < 250.0),
        },
        Line {
            figure: "highest insert rate kept up with".into(),
            value: match kept {
                Some(r) => format!(
                    "{} rows/s{}",
                    group(r as u64),
                    if writer_limited {
                        " (writer-limited)"
                    } else {
                        ""
                    }
                ),
                None => "below the first step".into(),
            },
            against: "target 50,000 rows/s".into(),
            ratio: ratio(kept.unwrap_or(0.0), 50_000.0),
            target: "50,000 rows/s".into(),
            met: met(kept.unwrap_or(0.0) >= 50_000.0 * 0.95),
        },
        Line {
            figure: "peak RSS, `burnrate watch` after backfill and idle".into(),
            value: format!("{:.0} MiB", watch.hwm_kib as f64 / 1024.0),
            against: format!("`snapshot --json` {:.0} MiB", snap_rss as f64 / 1024.0),
            ratio: ratio(watch.hwm_kib as f64 / 1024.0, 200.0),
            target: "< 200 MB".into(),
            met: met(watch.hwm_kib.max(snap_rss) as f64 * 1024.0 < 200e6),
        },
        Line {
            figure: format!("idle CPU, `burnrate watch`, {:.0} s", watch.idle_secs),
            value: format!("{:.2}% of a core", watch.cpu_percent),
            against: "1% of a core".into(),
            ratio: ratio(watch.cpu_percent, 1.0),
            target: "< 1% of a core".into(),
            met: met(watch.cpu_percent < 1.0),
        },
        Line {
            figure: format!(
                "drill-down frame, {} user rows (median of {iters})",
                group(render.rows as u64)
            ),
            value: fmt_ms(frame_ms),
            against: format!("p99 {}", fmt_ms(percentile(&render.frame_ms, 0.99))),
            ratio: ratio(frame_ms, 2.0),
            target: "< 2 ms".into(),
            met: met(frame_ms < 2.0),
        },
    ];

    println!();
    println!("## burnrate benchmark");
    println!();
    println!(
        "command: `scripts/bench{}{}{}`",
        if args.quick { " --quick" } else { "" },
        if args.reuse { " --reuse" } else { "" },
        format_args!(" --rows {} --runs {runs}", args.rows)
    );
    println!(
        "machine: {} cores, {} RAM; PostgreSQL {pg_version} (shared_buffers {shared_buffers}); \
         load average {load_start} at the start, {load_end} at the end",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_total()
    );
    println!("data set: {data_set}");
    if let Some(t) = load_time {
        println!(
            "loaded with COPY in {:.1} s ({:.0} rows/s)",
            t.as_secs_f64(),
            rows as f64 / t.as_secs_f64()
        );
    }
    println!(
        "medians of {runs} runs; seed queries reconstructed, not verbatim (scripts/bench.sql): \
         cost by feature per day {}, top 5 drivers this week {}, cost per request per day {}; \
         bare scan {}",
        fmt_ms(seed_feature),
        fmt_ms(seed["seed_top_cost_drivers_week"]),
        fmt_ms(seed["seed_cost_per_request_per_day"]),
        fmt_ms(bare)
    );
    println!(
        "cold start: `snapshot --json` used {} of CPU itself (median), the rest of its {} \
         is waiting, mostly for PostgreSQL",
        fmt_ms(cold_cpu_ms),
        fmt_ms(cold_ms)
    );
    println!(
        "in-process backfill (library) {}; dashboard Live after {} in a pseudo-terminal; \
         drill-down level build (once per change) {}",
        fmt_ms(backfill_ms),
        fmt_ms(ms(watch.to_live)),
        fmt_ms(render.build_ms)
    );
    println!();
    println!("| figure | burnrate | against | ratio | target | result |");
    println!("|---|---|---|---|---|---|");
    for l in &lines {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            l.figure, l.value, l.against, l.ratio, l.target, l.met
        );
    }
    println!();
    println!("insert-rate steps (refresh interval {refresh_s:.0} s):");
    for l in &step_lines {
        println!("- {l}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// --highcard: the high-cardinality data set of issue 17 and its start-up figures.
// ---------------------------------------------------------------------------

/// The loading view of today's dashboard: the progress screen instead of the
/// panes, and the header's placeholder for the figures.
const LOADING_VIEW: [&str; 3] = [
    "Loading history",
    "Loading the last",
    "once the history is in",
];

/// Anything on the screen that says part of the dashboard is still coming: the
/// status bar's backfill badge, and a pane or view that says it is loading or
/// waiting for something (the wording a progressive dashboard must use for the
/// full-dashboard time to wait for it).
const STILL_LOADING: [&str; 5] = [
    "Backfilling",
    "Loading",
    "loading",
    "Waiting for",
    "waiting for",
];

/// First screen: the header shows a month-to-date dollar figure ("month-to-date
/// $1,234" or, narrower, "MTD $1,234": a digit right after the dollar sign) and
/// the loading view is gone. The header shows no figure while the history loads
/// today ("month-to-date, burn and forecast once the history is in").
fn shows_live_numbers(screen: &str) -> bool {
    let figure = ["month-to-date $", "MTD $"].iter().any(|label| {
        screen.match_indices(label).any(|(i, _)| {
            screen[i + label.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
    });
    figure && !LOADING_VIEW.iter().any(|m| screen.contains(m))
}

/// Full dashboard: live numbers, the status bar's badge says Live, and nothing
/// on the screen says it is still loading or waiting (`STILL_LOADING`).
fn shows_full_dashboard(screen: &str) -> bool {
    shows_live_numbers(screen)
        && screen.contains(" Live ")
        && !STILL_LOADING.iter().any(|m| screen.contains(m))
}

/// The header's line with the month-to-date figure, for the log.
fn figures_line(screen: &str) -> String {
    screen
        .lines()
        .find(|l| l.contains("month-to-date $") || l.contains("MTD $"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default()
}

/// One `burnrate watch` start.
struct ScreenRun {
    /// Spawn to the first screen with live numbers.
    first_screen: Duration,
    /// Spawn to the full dashboard.
    full: Duration,
    /// VmHWM 3 s after the full dashboard.
    hwm_kib: u64,
}

/// Starts `burnrate watch` in a pseudo-terminal and times its first screen and
/// full dashboard (see `shows_live_numbers`, `shows_full_dashboard`), then its
/// peak RSS 3 s later; quits it.
fn watch_start(burnrate: &Path, url: &str, state: &Path, config: &Path) -> Result<ScreenRun> {
    let timeout = Duration::from_secs(3600);
    let mut w = PtyWatch::spawn(burnrate, url, state, config)?;
    let first_screen = w.wait_for("live numbers", timeout, shows_live_numbers)?;
    let header = figures_line(&w.screen());
    let full = w.wait_for("the full dashboard", timeout, shows_full_dashboard)?;
    w.idle(Duration::from_secs(3));
    let hwm_kib = vm_hwm_kib(w.pid).unwrap_or(0);
    w.quit();
    eprintln!(
        "    first screen {} ({header}), full dashboard {}, VmHWM {} MiB",
        fmt_ms(ms(first_screen)),
        fmt_ms(ms(full)),
        hwm_kib / 1024
    );
    Ok(ScreenRun {
        first_screen,
        full,
        hwm_kib,
    })
}

/// Drops and recreates burnrate_bench_highcard and fills it on the server with
/// `highcard_insert` of scripts/bench.sql, in batches.
async fn load_highcard(args: &Args, q: &Queries, admin: &Client, url: &str) -> Result<Duration> {
    simple(admin, &q.db("drop_database", HIGHCARD_DB)?).await?;
    simple(admin, &q.db("create_database", HIGHCARD_DB)?).await?;
    // The table, its columns and indexes exactly as `burnrate db init` makes them.
    schema::init(&ConnectTarget::from_url(url)?, TABLE).await?;
    let client = connect(url).await?;
    simple(&client, q.get("highcard_session")?).await?;
    let insert = client
        .prepare(q.get("highcard_insert")?)
        .await
        .wrap_err("preparing highcard_insert of scripts/bench.sql")?;
    let span = (HIGHCARD_DAYS * 86_400) as f64;
    let start = Utc::now().timestamp_micros() as f64 / 1e6 - span;
    let total = args.rows as f64;
    let started = Instant::now();
    let mut from = 0u64;
    let mut next_report = 1_000_000u64;
    while from < args.rows {
        let to = (from + HIGHCARD_BATCH).min(args.rows);
        let (a, b) = (from as i64, to as i64);
        client
            .execute(&insert, &[&a, &b, &total, &start, &span])
            .await
            .wrap_err_with(|| format!("inserting rows {from}..{to} of the high-cardinality set"))?;
        from = to;
        if from >= next_report || from == args.rows {
            eprintln!(
                "  inserted {} rows ({:.0} s)",
                group(from),
                started.elapsed().as_secs_f64()
            );
            next_report = from + 1_000_000;
        }
    }
    let took = started.elapsed();
    eprintln!("  VACUUM ANALYZE");
    simple(&client, q.get("vacuum_analyze")?).await?;
    Ok(took)
}

/// The median, the mean of the middle two of an even count (`median` is the
/// nearest-rank one, the lower of two runs); NaN when empty.
fn mid(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Median and the runs, for the table: "12.3 s (12.1 / 12.3 / 14.0)".
fn runs_ms(v: &[f64]) -> String {
    if v.len() <= 1 {
        return fmt_ms(mid(v));
    }
    let each: Vec<String> = v.iter().map(|&x| fmt_ms(x)).collect();
    format!("{} ({})", fmt_ms(mid(v)), each.join(" / "))
}

/// The numbers of the snapshot's `store` section, "cells 2,000,000, bytes ...".
fn store_summary(json: Option<&serde_json::Value>) -> String {
    let Some(store) = json
        .and_then(|j| j.get("store"))
        .and_then(|s| s.as_object())
    else {
        return "no store section in the JSON".into();
    };
    store
        .iter()
        .map(|(k, v)| match v.as_u64() {
            Some(n) => format!("{k} {}", group(n)),
            None => format!("{k} {v}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn store_field(json: Option<&serde_json::Value>, field: &str) -> Option<u64> {
    json?.get("store")?.get(field)?.as_u64()
}

/// Cold and restart starts of `watch` and `snapshot --json`, in pairs: the cold
/// one in a fresh state directory, the restart right after it in the same one
/// (what a restart finds there: nothing yet, as of session 10).
struct StartRuns {
    watch_cold: Vec<ScreenRun>,
    watch_restart: Vec<ScreenRun>,
    snap_cold: Vec<SnapshotRun>,
    snap_restart: Vec<SnapshotRun>,
}

fn start_runs(
    burnrate: &Path,
    url: &str,
    config: &Path,
    runs: usize,
    restarts: bool,
) -> Result<StartRuns> {
    let mut r = StartRuns {
        watch_cold: Vec::new(),
        watch_restart: Vec::new(),
        snap_cold: Vec::new(),
        snap_restart: Vec::new(),
    };
    for i in 0..runs {
        let state = tempfile::tempdir()?;
        eprintln!("  watch, run {}: cold", i + 1);
        r.watch_cold
            .push(watch_start(burnrate, url, state.path(), config)?);
        if restarts {
            eprintln!("  watch, run {}: restart", i + 1);
            r.watch_restart
                .push(watch_start(burnrate, url, state.path(), config)?);
        }
    }
    for i in 0..runs {
        let state = tempfile::tempdir()?;
        let one = |what: &str| -> Result<SnapshotRun> {
            let s = snapshot_run(burnrate, url, state.path(), config, true)?;
            eprintln!(
                "  snapshot --json, run {} {what}: {} wall; CPU {} user + {} system; \
                 server CPU {}; max RSS {} MiB; store: {}",
                i + 1,
                fmt_ms(ms(s.wall)),
                fmt_ms(ms(s.user)),
                fmt_ms(ms(s.system)),
                s.server_cpu.map_or("?".into(), |d| fmt_ms(ms(d))),
                s.max_rss_kib / 1024,
                store_summary(s.json.as_ref())
            );
            Ok(s)
        };
        r.snap_cold.push(one("cold")?);
        if restarts {
            r.snap_restart.push(one("restart")?);
        }
    }
    Ok(r)
}

fn col_ms<T>(v: &[T], f: impl Fn(&T) -> Duration) -> Vec<f64> {
    v.iter().map(|x| ms(f(x))).collect()
}

/// scripts/bench --highcard: loads (or, with --reuse, finds) the high-cardinality
/// data set and measures the start-up figures of issue 17 against the seed
/// cost-by-feature query timed in the same run.
async fn highcard(args: &Args, q: &Queries) -> Result<()> {
    let db = args.database();
    let url = bench_url(&args.admin_url, db)?;
    let runs = args.runs();
    let load_start = loadavg();
    let admin = connect(&args.admin_url).await?;
    let version = simple(&admin, q.get("server_version")?).await?;
    let pg_version = version.first().cloned().flatten().unwrap_or_default();
    let shared_buffers = version.get(1).cloned().flatten().unwrap_or_default();
    match find_postmaster(&admin).await {
        Some(pid) => {
            let _ = POSTMASTER.set(pid);
        }
        None => {
            eprintln!("  (the server's postmaster.pid is not readable here: no server CPU figures)")
        }
    }

    eprintln!("== the high-cardinality data set ({db})");
    let load_time = if args.reuse {
        let exists = simple(&admin, &q.db("database_exists", db)?).await?;
        if exists.first().cloned().flatten().as_deref() != Some("1") {
            bail!(
                "--reuse: there is no {db} database yet; run scripts/bench --highcard without --reuse"
            );
        }
        None
    } else {
        Some(load_highcard(args, q, &admin, &url).await?)
    };
    let client = connect(&url).await?;
    let ds = simple(&client, q.get("data_set")?).await?;
    let col = |i: usize| ds.get(i).cloned().flatten().unwrap_or_default();
    let rows: u64 = col(0).parse().unwrap_or(0);
    let t = Instant::now();
    let combos: u64 = simple(&client, q.get("combinations")?)
        .await?
        .first()
        .cloned()
        .flatten()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let combos_ms = ms(t.elapsed());
    let data_set = format!(
        "{} rows, {} users, {} features, {} models, {} tenants, {} regions, {} to {}, {} on disk; \
         {} (hour, five names) combinations ({:.1}% of the rows; one server GROUP BY of them {})",
        group(rows),
        col(1),
        col(2),
        col(3),
        col(4),
        col(5),
        col(6),
        col(7),
        col(8),
        group(combos),
        combos as f64 / rows.max(1) as f64 * 100.0,
        fmt_ms(combos_ms)
    );
    eprintln!("  {data_set}");
    if args.load_only {
        return Ok(());
    }

    eprintln!("== seed queries (reconstructed) and the bare scan, {runs} runs each");
    let mut seed = BTreeMap::new();
    for name in [
        "seed_cost_by_feature_per_day",
        "seed_top_cost_drivers_week",
        "seed_cost_per_request_per_day",
        "bare_scan",
    ] {
        let t = time_query(&client, q.get(name)?, runs).await?;
        eprintln!("  {name}: {}", runs_ms(&t));
        seed.insert(name, t);
    }
    let seed_before = seed["seed_cost_by_feature_per_day"].clone();

    let empty_config = tempfile::tempdir()?;
    eprintln!("== starts on the raw table: `watch` in a pseudo-terminal, then `snapshot --json`");
    let raw = start_runs(&args.burnrate, &url, empty_config.path(), runs, true)?;

    eprintln!("== in-process backfill (library), then tail polls");
    let target = ConnectTarget::from_url(&url)?;
    let t = Instant::now();
    let mut source = PgSource::new(target.clone(), source_options())?;
    let mut sink = Sink {
        store: Store::new(StoreConfig::default(), Utc::now()),
        tail_rows: 0,
        applied: Vec::new(),
    };
    step(&mut source, &mut sink, true).await?;
    let backfill_ms = ms(t.elapsed());
    eprintln!("  backfill {}", fmt_ms(backfill_ms));
    let polls = steady_polls(
        &mut source,
        &mut sink,
        &url,
        rows,
        HIGHCARD_DAYS,
        args.quick,
        301,
    )
    .await?;
    let (ref_rate, ref_phase) = (polls.ref_rate, polls.ref_phase);
    let idle_poll = mid(&polls.idle);
    eprintln!("  no new rows: median poll {}", fmt_ms(idle_poll));
    let ref_poll = mid(&ref_phase.polls.iter().map(|p| p.0).collect::<Vec<_>>());
    eprintln!(
        "  at the data set's own rate ({ref_rate:.1} rows/s, simulator rows): median poll {}",
        fmt_ms(ref_poll)
    );
    drop(source);
    drop(sink);

    let rollup = if args.rollup {
        eprintln!("== rollup mode: db init --rollup (the first roll), then the starts again");
        let home = tempfile::tempdir()?;
        let t = Instant::now();
        let mut init = Command::new(&args.burnrate);
        init.args(["db", "init", "--rollup"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        burnrate_env(&mut init, &url, home.path());
        if !init.status()?.success() {
            bail!("burnrate db init --rollup failed; its error is above");
        }
        let first_roll_ms = ms(t.elapsed());
        eprintln!("  first roll {}", fmt_ms(first_roll_ms));
        let config = tempfile::tempdir()?;
        std::fs::create_dir_all(config.path().join("burnrate"))?;
        std::fs::write(
            config.path().join("burnrate/burnrate.toml"),
            "[database]\nrollup = true\n",
        )?;
        let r = start_runs(&args.burnrate, &url, config.path(), runs, false)?;
        Some((first_roll_ms, r))
    } else {
        None
    };

    eprintln!("== the seed cost-by-feature query again, {runs} runs");
    let seed_after = time_query(&client, q.get("seed_cost_by_feature_per_day")?, runs).await?;
    eprintln!("  {}", runs_ms(&seed_after));
    let load_end = loadavg();

    // Medians.
    let all_seed: Vec<f64> = seed_before.iter().chain(&seed_after).copied().collect();
    let seed_feature = mid(&all_seed);
    let seed_all = seed_feature
        + mid(&seed["seed_top_cost_drivers_week"])
        + mid(&seed["seed_cost_per_request_per_day"]);
    let bare = mid(&seed["bare_scan"]);
    let first_cold = col_ms(&raw.watch_cold, |r| r.first_screen);
    let full_cold = col_ms(&raw.watch_cold, |r| r.full);
    let first_restart = col_ms(&raw.watch_restart, |r| r.first_screen);
    let full_restart = col_ms(&raw.watch_restart, |r| r.full);
    let watch_hwm_mib = raw
        .watch_cold
        .iter()
        .chain(&raw.watch_restart)
        .map(|r| r.hwm_kib)
        .max()
        .unwrap_or(0) as f64
        / 1024.0;
    let snap_wall = col_ms(&raw.snap_cold, |r| r.wall);
    let snap_user = mid(&col_ms(&raw.snap_cold, |r| r.user));
    let snap_sys = mid(&col_ms(&raw.snap_cold, |r| r.system));
    let snap_server: Vec<f64> = raw
        .snap_cold
        .iter()
        .filter_map(|r| r.server_cpu.map(ms))
        .collect();
    let snap_restart_wall = col_ms(&raw.snap_restart, |r| r.wall);
    let snap_rss_mib = raw
        .snap_cold
        .iter()
        .chain(&raw.snap_restart)
        .map(|r| r.max_rss_kib)
        .max()
        .unwrap_or(0) as f64
        / 1024.0;
    let store_json = raw.snap_cold.last().and_then(|r| r.json.as_ref());
    let mib_to_mb = |mib: f64| mib * 1024.0 * 1024.0 / 1e6;

    let mut lines = vec![
        Line {
            figure: "first screen, `watch` cold (header shows a month-to-date $ figure, no loading view)".into(),
            value: runs_ms(&first_cold),
            against: format!("seed query {}", fmt_ms(seed_feature)),
            ratio: ratio(mid(&first_cold), seed_feature),
            target: "<= 2 s".into(),
            met: met(mid(&first_cold) <= 2000.0),
        },
        Line {
            figure: "full dashboard, `watch` cold on the raw table (status bar Live, nothing loading)"
                .into(),
            value: runs_ms(&full_cold),
            against: format!("seed query {}", fmt_ms(seed_feature)),
            ratio: ratio(mid(&full_cold), seed_feature),
            target: "<= 3x seed query".into(),
            met: met(mid(&full_cold) <= 3.0 * seed_feature),
        },
        Line {
            figure: "restart: first screen, a second `watch` right after the first".into(),
            value: runs_ms(&first_restart),
            against: format!("seed query {}", fmt_ms(seed_feature)),
            ratio: ratio(mid(&first_restart), seed_feature),
            target: "<= 2 s".into(),
            met: met(mid(&first_restart) <= 2000.0),
        },
        Line {
            figure: "restart: full dashboard, the second `watch`".into(),
            value: runs_ms(&full_restart),
            against: format!("seed query {}", fmt_ms(seed_feature)),
            ratio: ratio(mid(&full_restart), seed_feature),
            target: "<= 2 s".into(),
            met: met(mid(&full_restart) <= 2000.0),
        },
        Line {
            figure: "`snapshot --json` cold on the raw table (wall)".into(),
            value: format!(
                "{}; CPU {} user + {} system; server CPU {}",
                runs_ms(&snap_wall),
                fmt_ms(snap_user),
                fmt_ms(snap_sys),
                fmt_ms(mid(&snap_server))
            ),
            against: format!("seed query {}", fmt_ms(seed_feature)),
            ratio: ratio(mid(&snap_wall), seed_feature),
            target: "<= 3x seed query".into(),
            met: met(mid(&snap_wall) <= 3.0 * seed_feature),
        },
        Line {
            figure: "restart: `snapshot --json` right after the first".into(),
            value: runs_ms(&snap_restart_wall),
            against: format!("seed query {}", fmt_ms(seed_feature)),
            ratio: ratio(mid(&snap_restart_wall), seed_feature),
            target: "<= 2 s".into(),
            met: met(mid(&snap_restart_wall) <= 2000.0),
        },
        Line {
            figure: "peak RSS, `watch` 3 s after the full dashboard (highest of its runs)".into(),
            value: format!("{watch_hwm_mib:.0} MiB ({:.0} MB)", mib_to_mb(watch_hwm_mib)),
            against: "150 MB".into(),
            ratio: ratio(mib_to_mb(watch_hwm_mib), 150.0),
            target: "<= 150 MB".into(),
            met: met(mib_to_mb(watch_hwm_mib) <= 150.0),
        },
        Line {
            figure: "peak RSS, `snapshot --json` (highest of its runs)".into(),
            value: format!("{snap_rss_mib:.0} MiB ({:.0} MB)", mib_to_mb(snap_rss_mib)),
            against: "150 MB".into(),
            ratio: ratio(mib_to_mb(snap_rss_mib), 150.0),
            target: "(information)".into(),
            met: "-".into(),
        },
        Line {
            figure: "store (`snapshot --json`, its `store` section)".into(),
            value: format!(
                "{} cells, {} bytes",
                store_field(store_json, "cells").map_or("?".into(), group),
                store_field(store_json, "bytes").map_or("?".into(), group)
            ),
            against: format!("{} rows, {} combinations", group(rows), group(combos)),
            ratio: store_field(store_json, "cells")
                .map_or("n/a".into(), |c| ratio(c as f64, rows as f64)),
            target: "(information)".into(),
            met: "-".into(),
        },
        Line {
            figure: "database time per refresh, no new rows".into(),
            value: fmt_ms(idle_poll),
            against: format!("3 seed queries {}", fmt_ms(seed_all)),
            ratio: format!("{} less", ratio(seed_all, idle_poll)),
            target: ">= 500x less (issue 8)".into(),
            met: met(seed_all / idle_poll >= 500.0),
        },
        Line {
            figure: format!("database time per refresh, data set's rate ({ref_rate:.1} rows/s)"),
            value: fmt_ms(ref_poll),
            against: format!("3 seed queries {}", fmt_ms(seed_all)),
            ratio: format!("{} less", ratio(seed_all, ref_poll)),
            target: ">= 500x less (issue 8)".into(),
            met: met(seed_all / ref_poll >= 500.0),
        },
    ];
    if let Some((first_roll_ms, r)) = &rollup {
        let first = col_ms(&r.watch_cold, |r| r.first_screen);
        let full = col_ms(&r.watch_cold, |r| r.full);
        let snap = col_ms(&r.snap_cold, |r| r.wall);
        let hwm = r.watch_cold.iter().map(|r| r.hwm_kib).max().unwrap_or(0) as f64 / 1024.0;
        lines.extend([
            Line {
                figure: "rollup mode: first screen, `watch` cold".into(),
                value: runs_ms(&first),
                against: format!("seed query {}", fmt_ms(seed_feature)),
                ratio: ratio(mid(&first), seed_feature),
                target: "<= 2 s".into(),
                met: met(mid(&first) <= 2000.0),
            },
            Line {
                figure: format!(
                    "rollup mode: full dashboard, `watch` cold (first roll {}; peak RSS {hwm:.0} MiB)",
                    fmt_ms(*first_roll_ms)
                ),
                value: runs_ms(&full),
                against: format!("seed query {}", fmt_ms(seed_feature)),
                ratio: ratio(mid(&full), seed_feature),
                target: "<= seed query".into(),
                met: met(mid(&full) <= seed_feature),
            },
            Line {
                figure: "rollup mode: `snapshot --json` cold".into(),
                value: format!(
                    "{}; CPU {} user + {} system",
                    runs_ms(&snap),
                    fmt_ms(mid(&col_ms(&r.snap_cold, |r| r.user))),
                    fmt_ms(mid(&col_ms(&r.snap_cold, |r| r.system)))
                ),
                against: format!("seed query {}", fmt_ms(seed_feature)),
                ratio: ratio(mid(&snap), seed_feature),
                target: "<= seed query".into(),
                met: met(mid(&snap) <= seed_feature),
            },
        ]);
    }

    println!();
    println!("## burnrate benchmark: the high-cardinality data set (issue 17)");
    println!();
    println!(
        "command: `scripts/bench --highcard{}{}{}{}`",
        if args.rollup { " --rollup" } else { "" },
        if args.quick { " --quick" } else { "" },
        if args.reuse { " --reuse" } else { "" },
        format_args!(" --rows {} --runs {runs}", args.rows)
    );
    println!(
        "machine: {} cores, {} RAM; PostgreSQL {pg_version} (shared_buffers {shared_buffers}); \
         load average {load_start} at the start, {load_end} at the end",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_total()
    );
    println!("data set ({db}): {data_set}");
    if let Some(t) = load_time {
        println!(
            "generated on the server (highcard_insert, batches of {}) in {:.1} s ({:.0} rows/s)",
            group(HIGHCARD_BATCH),
            t.as_secs_f64(),
            args.rows as f64 / t.as_secs_f64()
        );
    }
    println!(
        "medians of {runs} runs (each run listed in brackets); the seed cost-by-feature query \
         (reconstructed, scripts/bench.sql) {} before the starts and {} after them, {} over \
         both; top 5 drivers this week {}, cost per request per day {}; bare scan {}",
        runs_ms(&seed_before),
        runs_ms(&seed_after),
        fmt_ms(seed_feature),
        fmt_ms(mid(&seed["seed_top_cost_drivers_week"])),
        fmt_ms(mid(&seed["seed_cost_per_request_per_day"])),
        fmt_ms(bare)
    );
    println!(
        "where a cold `snapshot --json` spends its {}: {} of its own CPU ({} user + {} system), \
         {} of CPU in the PostgreSQL server's processes meanwhile (other clients' included)",
        fmt_ms(mid(&snap_wall)),
        fmt_ms(snap_user + snap_sys),
        fmt_ms(snap_user),
        fmt_ms(snap_sys),
        fmt_ms(mid(&snap_server))
    );
    println!(
        "in-process backfill (library, no process start, no rendering) {}",
        fmt_ms(backfill_ms)
    );
    println!("store after the backfill: {}", store_summary(store_json));
    println!();
    println!("| figure | burnrate | against | ratio | target | result |");
    println!("|---|---|---|---|---|---|");
    for l in &lines {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            l.figure, l.value, l.against, l.ratio, l.target, l.met
        );
    }
    Ok(())
}
