//! Column maps: which column (or JSON key path) of the watched table holds each of
//! burnrate's fields, the presets for tables other products make, and the check of
//! a map against the catalog at source start.
//!
//! A map entry is never SQL. It is a small language parsed and validated here:
//! a column name (`model`, `"startTime"` for mixed case, unquoted names fold to lower
//! case as in PostgreSQL), optionally followed by JSON steps, each `-> 'key'` or
//! `-> 0` (array index), e.g. `metadata -> 'feature'` or `request_tags -> 0`. The
//! SQL is rendered from the parsed form: identifiers double-quoted, keys as escaped
//! string literals, indexes as integers.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::prices::PriceList;
use super::schema::{ColumnInfo, CostKind, quote_ident};
use crate::model::TailMode;

/// PostgreSQL truncates identifiers to 63 bytes.
const MAX_IDENT_BYTES: usize = 63;
const MAX_KEY_CHARS: usize = 200;
const MAX_STEPS: usize = 8;

/// Known table layouts, selectable with `--preset` or `source.preset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// burnrate's own `cost_events` (what `burnrate db init` creates).
    #[default]
    Burnrate,
    /// The seed article's minimal table: `timestamp`, `feature_name`, `cost_usd`.
    Seed,
    /// LiteLLM proxy's spend log, `"LiteLLM_SpendLogs"`.
    Litellm,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Burnrate => "burnrate",
            Preset::Seed => "seed",
            Preset::Litellm => "litellm",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `[source]` section of the config.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// `burnrate`, `seed` or `litellm`; `--preset` wins.
    pub preset: Preset,
    /// The table to watch; default: the litellm preset's `"LiteLLM_SpendLogs"`, else
    /// `database.table`.
    pub table: Option<String>,
    /// Tables without an id or tx column: how far back each poll re-reads (rows
    /// committed later than this behind the newest row are missed).
    #[serde(with = "crate::config::humantime_serde_compat")]
    pub overlap: Duration,
    /// Per field, the column or JSON key path, replacing the preset's.
    pub columns: ColumnsConfig,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            preset: Preset::Burnrate,
            table: None,
            overlap: Duration::from_secs(120),
            columns: ColumnsConfig::default(),
        }
    }
}

/// `[source.columns]`: each key is a column (`"startTime"`), a JSON key path
/// (`metadata -> 'feature'`), or `""` for "not in this table".
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ColumnsConfig {
    pub timestamp: Option<String>,
    pub cost: Option<String>,
    pub feature: Option<String>,
    pub user: Option<String>,
    pub model: Option<String>,
    pub tenant: Option<String>,
    pub region: Option<String>,
    pub input_tokens: Option<String>,
    pub output_tokens: Option<String>,
    pub request_id: Option<String>,
    pub order: Option<String>,
    pub tx: Option<String>,
}

impl ColumnsConfig {
    fn get(&self, f: Field) -> Option<&String> {
        match f {
            Field::Timestamp => self.timestamp.as_ref(),
            Field::Cost => self.cost.as_ref(),
            Field::Feature => self.feature.as_ref(),
            Field::User => self.user.as_ref(),
            Field::Model => self.model.as_ref(),
            Field::Tenant => self.tenant.as_ref(),
            Field::Region => self.region.as_ref(),
            Field::InputTokens => self.input_tokens.as_ref(),
            Field::OutputTokens => self.output_tokens.as_ref(),
            Field::RequestId => self.request_id.as_ref(),
            Field::Order => self.order.as_ref(),
            Field::Tx => self.tx.as_ref(),
        }
    }
}

/// burnrate's fields, in the order maps are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Timestamp,
    Cost,
    Feature,
    User,
    Model,
    Tenant,
    Region,
    InputTokens,
    OutputTokens,
    RequestId,
    Order,
    Tx,
}

impl Field {
    /// The name dimension this field fills, if it is one of the five names.
    pub fn dim(self) -> Option<crate::model::Dim> {
        use crate::model::Dim;
        match self {
            Field::Feature => Some(Dim::Feature),
            Field::User => Some(Dim::User),
            Field::Model => Some(Dim::Model),
            Field::Tenant => Some(Dim::Tenant),
            Field::Region => Some(Dim::Region),
            _ => None,
        }
    }

    pub const ALL: [Field; 12] = [
        Field::Timestamp,
        Field::Cost,
        Field::Feature,
        Field::User,
        Field::Model,
        Field::Tenant,
        Field::Region,
        Field::InputTokens,
        Field::OutputTokens,
        Field::RequestId,
        Field::Order,
        Field::Tx,
    ];
    /// The five name fields, in `Dim::ALL` order.
    pub const NAMES: [Field; 5] = [
        Field::Feature,
        Field::User,
        Field::Model,
        Field::Tenant,
        Field::Region,
    ];

    /// The key under `[source.columns]`.
    pub fn key(self) -> &'static str {
        match self {
            Field::Timestamp => "timestamp",
            Field::Cost => "cost",
            Field::Feature => "feature",
            Field::User => "user",
            Field::Model => "model",
            Field::Tenant => "tenant",
            Field::Region => "region",
            Field::InputTokens => "input_tokens",
            Field::OutputTokens => "output_tokens",
            Field::RequestId => "request_id",
            Field::Order => "order",
            Field::Tx => "tx",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Field::Timestamp => {
                "timestamp with time zone, or timestamp without time zone (read as UTC)"
            }
            Field::Cost => "numeric, double precision, real or an integer type",
            Field::InputTokens | Field::OutputTokens => "an integer type or numeric",
            Field::Order => "an integer type (a serial id that grows with every insert)",
            Field::Tx => "xid8 (DEFAULT pg_current_xact_id())",
            _ => "a text-like column, or a JSON key path into a json/jsonb column",
        }
    }

    fn allows_json_path(self) -> bool {
        Field::NAMES.contains(&self) || self == Field::RequestId
    }
}

/// One step into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonStep {
    Key(String),
    Index(i32),
}

/// A parsed map entry: a column and an optional JSON key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub column: String,
    pub path: Vec<JsonStep>,
}

impl ColumnSpec {
    pub fn column(name: &str) -> ColumnSpec {
        ColumnSpec {
            column: name.to_string(),
            path: Vec::new(),
        }
    }

    /// Parses `name`, `"Name"`, `col -> 'key' -> 0`. The error says what is wrong.
    pub fn parse(text: &str) -> Result<ColumnSpec, String> {
        let mut p = Parser {
            s: text.trim(),
            pos: 0,
        };
        let column = p.ident()?;
        let mut path = Vec::new();
        loop {
            p.skip_ws();
            if p.at_end() {
                break;
            }
            if !p.eat("->") {
                return Err(format!(
                    "unexpected {:?}: after the column only JSON steps `-> 'key'` or `-> 0` may follow",
                    p.rest()
                ));
            }
            p.eat(">"); // `->>` reads the same
            p.skip_ws();
            path.push(p.step()?);
            if path.len() > MAX_STEPS {
                return Err(format!("at most {MAX_STEPS} JSON steps"));
            }
        }
        Ok(ColumnSpec { column, path })
    }

    /// The value as SQL over the row alias `e`: the column, or the JSON path read as
    /// text (`->>` on the last step).
    pub(crate) fn sql(&self) -> String {
        let mut out = format!("e.{}", quote_ident(&self.column));
        if self.path.is_empty() {
            return out;
        }
        let n = self.path.len();
        for (i, step) in self.path.iter().enumerate() {
            out.push_str(if i + 1 == n { " ->> " } else { " -> " });
            match step {
                JsonStep::Key(k) => out.push_str(&format!("'{}'", k.replace('\'', "''"))),
                JsonStep::Index(i) => out.push_str(&i.to_string()),
            }
        }
        format!("({out})")
    }
}

/// The canonical form, which parses back to the same spec.
impl fmt::Display for ColumnSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = {
            let mut c = self.column.chars();
            c.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        };
        if plain {
            f.write_str(&self.column)?;
        } else {
            f.write_str(&quote_ident(&self.column))?;
        }
        for step in &self.path {
            match step {
                JsonStep::Key(k) => write!(f, " -> '{}'", k.replace('\'', "''"))?,
                JsonStep::Index(i) => write!(f, " -> {i}")?,
            }
        }
        Ok(())
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
    fn skip_ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }
    fn eat(&mut self, t: &str) -> bool {
        if self.rest().starts_with(t) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        if self.eat("\"") {
            let mut out = String::new();
            loop {
                let Some(c) = self.rest().chars().next() else {
                    return Err("unterminated quoted column name".into());
                };
                self.pos += c.len_utf8();
                if c == '"' {
                    if self.eat("\"") {
                        out.push('"');
                        continue;
                    }
                    break;
                }
                if c.is_control() {
                    return Err("a column name cannot contain control characters".into());
                }
                out.push(c);
            }
            if out.is_empty() {
                return Err("empty quoted column name".into());
            }
            if out.len() > MAX_IDENT_BYTES {
                return Err("a column name is longer than PostgreSQL's 63 bytes".into());
            }
            return Ok(out);
        }
        let r = self.rest();
        let end = r
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(r.len());
        let raw = &r[..end];
        if !raw
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        {
            return Err(format!(
                "expected a column name at {r:?}: a name starts with a letter or _ and has only \
                 letters, digits, _ and $ (put other names, and mixed-case ones, in double quotes)"
            ));
        }
        if raw.len() > MAX_IDENT_BYTES {
            return Err("a column name is longer than PostgreSQL's 63 bytes".into());
        }
        let name = raw.to_ascii_lowercase();
        self.pos += end;
        Ok(name)
    }

    fn step(&mut self) -> Result<JsonStep, String> {
        if self.eat("'") {
            let mut out = String::new();
            loop {
                let Some(c) = self.rest().chars().next() else {
                    return Err("unterminated JSON key (a key is written 'key')".into());
                };
                self.pos += c.len_utf8();
                if c == '\'' {
                    if self.eat("'") {
                        out.push('\'');
                        continue;
                    }
                    break;
                }
                if c.is_control() || c == '\\' {
                    return Err("a JSON key cannot contain control characters or \\".into());
                }
                out.push(c);
            }
            if out.chars().count() > MAX_KEY_CHARS {
                return Err(format!(
                    "a JSON key is longer than {MAX_KEY_CHARS} characters"
                ));
            }
            return Ok(JsonStep::Key(out));
        }
        let r = self.rest();
        let end = r
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
            .map_or(r.len(), |(i, _)| i);
        let digits = &r[..end];
        match digits.parse::<i32>() {
            Ok(i) => {
                self.pos += end;
                Ok(JsonStep::Index(i))
            }
            Err(_) => Err(format!(
                "expected a JSON key in single quotes ('feature') or an array index (0) at {r:?}"
            )),
        }
    }
}

/// Where a map entry came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOrigin {
    /// The preset's column: optional fields that the table lacks are left out.
    Preset { required: bool },
    /// `source.columns.<key>`: must exist.
    Config,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    pub field: Field,
    pub spec: ColumnSpec,
    pub origin: EntryOrigin,
}

/// The map to check at start: table, preset and the wanted columns.
#[derive(Debug, Clone, PartialEq)]
pub struct MapSpec {
    pub preset: Preset,
    pub table: String,
    pub entries: Vec<MapEntry>,
    /// Keyset mode: how far back each poll re-reads.
    pub overlap: Duration,
    /// burnrate's own table unchanged: the checks (and messages) of `db init`'s schema.
    pub strict_burnrate: bool,
    /// Costs computed from tokens where a row logs none or zero (`[prices]`).
    pub prices: PriceList,
}

/// The preset's columns: (field, spec text, required).
fn preset_columns(preset: Preset) -> Vec<(Field, &'static str, bool)> {
    let ours = |required_order: bool| {
        vec![
            (Field::Timestamp, "timestamp", true),
            (Field::Cost, "cost_usd", true),
            (Field::Feature, "feature_name", false),
            (Field::User, "user_id", false),
            (Field::Model, "model", false),
            (Field::Tenant, "tenant_id", false),
            (Field::Region, "region", false),
            (Field::InputTokens, "input_tokens", false),
            (Field::OutputTokens, "output_tokens", false),
            (Field::RequestId, "request_id", false),
            (Field::Order, "id", required_order),
            (Field::Tx, "tx", false),
        ]
    };
    match preset {
        Preset::Burnrate => ours(true),
        Preset::Seed => ours(false),
        // LiteLLM's spend log as its Prisma schema declares it (BerriAI/litellm,
        // schema.prisma, `model LiteLLM_SpendLogs`): request_id String @id,
        // spend Float (double precision), prompt_tokens / completion_tokens Int,
        // startTime DateTime (timestamp(3) without time zone, UTC), model String,
        // request_tags Json? (a JSON array of tags), team_id String?, end_user String?,
        // and @@index([startTime, request_id]) which the keyset tail uses.
        Preset::Litellm => vec![
            (Field::Timestamp, "\"startTime\"", true),
            (Field::Cost, "spend", true),
            (Field::Feature, "request_tags -> 0", false),
            (Field::User, "end_user", false),
            (Field::Model, "model", false),
            (Field::Tenant, "team_id", false),
            (Field::InputTokens, "prompt_tokens", false),
            (Field::OutputTokens, "completion_tokens", false),
            (Field::RequestId, "request_id", true),
        ],
    }
}

impl MapSpec {
    /// The map for a preset with the config's overrides. `flag` (`--preset`) wins
    /// over `source.preset`; `db_table` is `database.table`.
    pub fn build(
        src: &SourceConfig,
        flag: Option<Preset>,
        db_table: &str,
    ) -> Result<MapSpec, String> {
        let preset = flag.unwrap_or(src.preset);
        let table = match (&src.table, preset) {
            (Some(t), _) => t.clone(),
            (None, Preset::Litellm) => "\"LiteLLM_SpendLogs\"".to_string(),
            (None, _) => db_table.to_string(),
        };
        let mut entries: Vec<MapEntry> = Vec::new();
        for (field, text, required) in preset_columns(preset) {
            let spec = ColumnSpec::parse(text).map_err(|e| format!("preset {preset}: {e}"))?;
            entries.push(MapEntry {
                field,
                spec,
                origin: EntryOrigin::Preset { required },
            });
        }
        let mut overridden = false;
        for field in Field::ALL {
            let Some(text) = src.columns.get(field) else {
                continue;
            };
            overridden = true;
            entries.retain(|e| e.field != field);
            if text.trim().is_empty() {
                if matches!(field, Field::Timestamp) {
                    return Err(format!(
                        "key `source.columns.{}`: the timestamp column cannot be left out",
                        field.key()
                    ));
                }
                continue;
            }
            let spec = ColumnSpec::parse(text)
                .map_err(|e| format!("key `source.columns.{}` = {text:?}: {e}", field.key()))?;
            if !spec.path.is_empty() && !field.allows_json_path() {
                return Err(format!(
                    "key `source.columns.{}` = {text:?}: a JSON key path is allowed only for \
                     feature, user, model, tenant, region and request_id; map {} to a column of \
                     type {}",
                    field.key(),
                    field.key(),
                    field.expected()
                ));
            }
            entries.push(MapEntry {
                field,
                spec,
                origin: EntryOrigin::Config,
            });
        }
        entries.sort_by_key(|e| e.field);
        Ok(MapSpec {
            preset,
            table,
            entries,
            overlap: src.overlap,
            strict_burnrate: preset == Preset::Burnrate && !overridden,
            prices: PriceList::new(),
        })
    }

    /// Adds the price list (a table then needs no cost column).
    pub fn with_prices(mut self, prices: PriceList) -> MapSpec {
        self.prices = prices;
        self
    }

    pub fn entry(&self, field: Field) -> Option<&MapEntry> {
        self.entries.iter().find(|e| e.field == field)
    }
}

impl Default for MapSpec {
    fn default() -> Self {
        MapSpec::build(&SourceConfig::default(), None, "cost_events")
            .expect("the burnrate preset is valid")
    }
}

/// How new rows are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOrder {
    /// A tx column (xid8) and an integer id: the gap-free watermark.
    Tx { tx: String, id: String },
    /// An integer id only: id overlap with gap tracking.
    Id { id: String },
    /// No id: keyset on (timestamp, key), re-reading an overlap window.
    Keyset { key: String },
    /// No id and no key: the overlap window re-aggregated each poll.
    Window,
}

/// One mapped field as found in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub field: Field,
    /// The map entry as written canonically.
    pub spec: String,
    /// The column's type as the catalog shows it.
    pub found: String,
}

/// A map checked against the table: SQL expressions over the row alias `e`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedMap {
    /// The timestamp column as stored (for comparisons the index can serve).
    pub ts_column: String,
    /// `timestamp without time zone`: values are UTC.
    pub ts_naive: bool,
    pub cost: String,
    pub cost_kind: CostKind,
    /// Text expressions of the five names (NULL where the row has none).
    pub names: [Option<String>; 5],
    pub input_tokens: Option<String>,
    pub output_tokens: Option<String>,
    pub request_id: Option<String>,
    pub order: RowOrder,
    /// What matched, for `doctor`.
    pub mapped: Vec<Mapped>,
    /// Fields with no column: shown as "(none)".
    pub unmapped: Vec<Field>,
    /// The price list for rows without a cost.
    pub prices: PriceList,
}

impl ResolvedMap {
    pub fn mode(&self) -> TailMode {
        match self.order {
            RowOrder::Tx { .. } => TailMode::TxWatermark,
            RowOrder::Id { .. } => TailMode::IdOverlap,
            RowOrder::Keyset { .. } => TailMode::KeysetOverlap,
            RowOrder::Window => TailMode::WindowOverlap,
        }
    }

    /// A timestamptz SQL value (e.g. a parameter) as the timestamp column's type.
    pub(crate) fn ts_value(&self, timestamptz: &str) -> String {
        if self.ts_naive {
            format!("({timestamptz}::timestamptz AT TIME ZONE 'UTC')")
        } else {
            format!("{timestamptz}::timestamptz")
        }
    }
}

const INTEGER_TYPES: [&str; 3] = ["int2", "int4", "int8"];
const TEXTLIKE: [&str; 6] = ["text", "varchar", "bpchar", "name", "uuid", "citext"];

/// Checks a map against the table's columns. Errors name the map key, what was
/// expected, what was found and the columns that exist.
pub fn resolve(spec: &MapSpec, columns: &[ColumnInfo]) -> Result<ResolvedMap, String> {
    let listing = || {
        let cols: Vec<String> = columns
            .iter()
            .map(|c| format!("{} ({})", show_ident(&c.name), c.display_type))
            .collect();
        format!("the table's columns are: {}", cols.join(", "))
    };
    let who = |e: &MapEntry| match e.origin {
        EntryOrigin::Config => format!(
            "key `source.columns.{}` = {:?}",
            e.field.key(),
            e.spec.to_string()
        ),
        EntryOrigin::Preset { .. } => format!(
            "the {} preset's {} column {}",
            spec.preset,
            e.field.key(),
            e.spec
        ),
    };
    let mut found: Vec<(&MapEntry, &ColumnInfo)> = Vec::new();
    let mut unmapped = Vec::new();
    for field in Field::ALL {
        let Some(e) = spec.entry(field) else {
            unmapped.push(field);
            continue;
        };
        match columns.iter().find(|c| c.name == e.spec.column) {
            Some(c) => found.push((e, c)),
            None => {
                if e.origin == (EntryOrigin::Preset { required: false }) {
                    unmapped.push(field);
                    continue;
                }
                let likely = || {
                    likely_columns(field, columns)
                        .first()
                        .map(|c| {
                            format!(
                                " (map it with [source.columns] {} = {:?})",
                                field.key(),
                                show_ident(&c.name)
                            )
                        })
                        .unwrap_or_default()
                };
                let hint = match closest_column(&e.spec.column, columns) {
                    Some(c) if c.name.eq_ignore_ascii_case(&e.spec.column) => format!(
                        " (did you mean {}? mixed-case names need double quotes)",
                        quote_ident(&c.name)
                    ),
                    Some(c) => format!(" (did you mean {}?)", show_ident(&c.name)),
                    None => likely(),
                };
                return Err(format!(
                    "{}: table {} has no column {}{hint}; expected {}. {}",
                    who(e),
                    spec.table,
                    show_ident(&e.spec.column),
                    field.expected(),
                    listing()
                ));
            }
        }
    }
    let mismatch = |e: &MapEntry, c: &ColumnInfo, why: &str| {
        format!(
            "{}: column {} has type {}, expected {}{why}. {}",
            who(e),
            show_ident(&c.name),
            c.display_type,
            e.field.expected(),
            listing()
        )
    };

    let mut ts = None;
    let mut cost = None;
    let mut names: [Option<String>; 5] = Default::default();
    let (mut input, mut output, mut request_id, mut id, mut tx) = (None, None, None, None, None);
    let mut mapped = Vec::new();
    for (e, c) in found {
        let t = c.type_name.as_str();
        let is_json = t == "json" || t == "jsonb";
        if !e.spec.path.is_empty() && !is_json {
            return Err(mismatch(
                e,
                c,
                " (a JSON key path needs a json or jsonb column)",
            ));
        }
        match e.field {
            Field::Timestamp => match t {
                "timestamptz" => ts = Some((e.spec.sql(), false)),
                "timestamp" => ts = Some((e.spec.sql(), true)),
                _ => return Err(mismatch(e, c, "")),
            },
            Field::Cost => {
                let kind = match t {
                    "numeric" => CostKind::Numeric,
                    "float4" | "float8" => CostKind::Float,
                    t if INTEGER_TYPES.contains(&t) => CostKind::Integer,
                    _ => return Err(mismatch(e, c, "")),
                };
                cost = Some((e.spec.sql(), kind));
            }
            Field::InputTokens | Field::OutputTokens => {
                if !(INTEGER_TYPES.contains(&t) || t == "numeric") {
                    return Err(mismatch(e, c, ""));
                }
                if e.field == Field::InputTokens {
                    input = Some(e.spec.sql());
                } else {
                    output = Some(e.spec.sql());
                }
            }
            Field::Order => {
                if !INTEGER_TYPES.contains(&t) {
                    return Err(mismatch(e, c, ""));
                }
                id = Some(e.spec.sql());
            }
            Field::Tx => {
                if t != "xid8" {
                    if e.origin == EntryOrigin::Config {
                        return Err(mismatch(e, c, ""));
                    }
                    tracing::warn!(column = %c.name, "column tx is not xid8; not used");
                    unmapped.push(Field::Tx);
                    continue;
                }
                tx = Some(e.spec.sql());
            }
            Field::Feature
            | Field::User
            | Field::Model
            | Field::Tenant
            | Field::Region
            | Field::RequestId => {
                if is_json && e.spec.path.is_empty() {
                    return Err(mismatch(
                        e,
                        c,
                        " (a json column needs a key path, e.g. metadata -> 'feature' or tags -> 0)",
                    ));
                }
                if !(is_json || TEXTLIKE.contains(&t) || INTEGER_TYPES.contains(&t)) {
                    return Err(mismatch(e, c, ""));
                }
                let text = if is_json {
                    e.spec.sql()
                } else {
                    format!("{}::text", e.spec.sql())
                };
                match e.field {
                    Field::RequestId => request_id = Some(text),
                    f => {
                        let i = Field::NAMES.iter().position(|n| *n == f).unwrap_or(0);
                        names[i] = Some(text);
                    }
                }
            }
        }
        mapped.push(Mapped {
            field: e.field,
            spec: e.spec.to_string(),
            found: c.display_type.clone(),
        });
    }
    let Some((ts_column, ts_naive)) = ts else {
        return Err(format!(
            "no timestamp column is mapped; set source.columns.timestamp. {}",
            listing()
        ));
    };
    let (cost, cost_kind) = match cost {
        Some(c) => c,
        // Every cost comes from the price list.
        None if !spec.prices.is_empty() => ("NULL::numeric".to_string(), CostKind::Numeric),
        None => {
            return Err(format!(
                "no cost column is mapped; set source.columns.cost, or give [prices] to \
                 compute costs from tokens. {}",
                listing()
            ));
        }
    };
    let order = match (tx, id) {
        (Some(tx), Some(id)) => RowOrder::Tx { tx, id },
        (None, Some(id)) => RowOrder::Id { id },
        (_, None) => {
            // The keyset needs a plain column as its key (an index can serve it).
            let key = spec
                .entry(Field::RequestId)
                .filter(|e| e.spec.path.is_empty() && request_id.is_some())
                .map(|e| e.spec.sql());
            // Without one, rows cannot be told apart: re-aggregate the window.
            key.map_or(RowOrder::Window, |key| RowOrder::Keyset { key })
        }
    };
    unmapped.sort();
    unmapped.dedup();
    Ok(ResolvedMap {
        ts_column,
        ts_naive,
        cost,
        cost_kind,
        names,
        input_tokens: input,
        output_tokens: output,
        request_id,
        order,
        mapped,
        unmapped,
        prices: spec.prices.clone(),
    })
}

/// A column name as it would be written in a map.
fn show_ident(name: &str) -> String {
    ColumnSpec::column(name).to_string()
}

/// Edits (insertions, deletions, substitutions) between two names, by character.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The column a misspelt name most likely meant: the same name in another case, or
/// the nearest within a third of its length (at least one edit, at most three).
fn closest_column<'a>(want: &str, columns: &'a [ColumnInfo]) -> Option<&'a ColumnInfo> {
    if let Some(c) = columns.iter().find(|c| c.name.eq_ignore_ascii_case(want)) {
        return Some(c);
    }
    let limit = (want.chars().count() / 3).clamp(1, 3);
    columns
        .iter()
        .map(|c| {
            (
                edit_distance(&want.to_lowercase(), &c.name.to_lowercase()),
                c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, c.attnum))
        .map(|(_, c)| c)
}

/// Columns of the table that look like they hold `field`, by type and name: what to
/// suggest mapping before anything is added to the table.
pub(crate) fn likely_columns(field: Field, columns: &[ColumnInfo]) -> Vec<&ColumnInfo> {
    let named = |c: &ColumnInfo, words: &[&str]| {
        let n = c.name.to_lowercase();
        words.iter().any(|w| n.contains(w))
    };
    columns
        .iter()
        .filter(|c| {
            let t = c.type_name.as_str();
            match field {
                Field::Cost => {
                    (t == "numeric" || t == "float4" || t == "float8" || INTEGER_TYPES.contains(&t))
                        && named(c, &["cost", "spend", "price", "usd", "amount", "charge"])
                        && !named(c, &["token"])
                }
                Field::Timestamp => t == "timestamptz" || t == "timestamp",
                _ => false,
            }
        })
        .collect()
}

/// How to fix a missing column of burnrate's own layout: map one the table already
/// has, and add a column only where the database fills it for every writer.
pub(crate) fn missing_column_advice(column: &str, columns: &[ColumnInfo]) -> String {
    let field = match column {
        "cost_usd" => Some(Field::Cost),
        "timestamp" => Some(Field::Timestamp),
        _ => None,
    };
    let map_it = |f: Field| {
        likely_columns(f, columns).first().map(|c| {
            format!(
                "Map the table's own column in the config: [source.columns] {} = {:?} \
                 (burnrate reads it in place; nothing is added to the table)",
                f.key(),
                show_ident(&c.name)
            )
        })
    };
    match field {
        Some(Field::Cost) => map_it(Field::Cost).unwrap_or_else(|| {
            "Map the column that holds each request's cost in the config ([source.columns] \
             cost = \"...\"), or list [prices] to compute costs from token counts. Only if \
             whatever writes the rows will fill a cost_usd column, add it with `burnrate db \
             init` (it starts empty: every existing row would be rejected)"
                .into()
        }),
        Some(Field::Timestamp) => map_it(Field::Timestamp).unwrap_or_else(|| {
            "Map the column that holds each request's time ([source.columns] timestamp = \
             \"...\"), or add one with `burnrate db init` (DEFAULT now(): each row's insert \
             time, filled by the database)"
                .into()
        }),
        _ => format!(
            "Add it with `burnrate db init` ({column} is filled by the database on every \
             insert, so writers need no change)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, type_name: &str, display: &str) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            type_name: type_name.into(),
            display_type: display.into(),
            attnum: 1,
        }
    }

    /// LiteLLM_SpendLogs as Prisma creates it (the columns burnrate may read).
    fn litellm_columns() -> Vec<ColumnInfo> {
        vec![
            col("request_id", "text", "text"),
            col("call_type", "text", "text"),
            col("spend", "float8", "double precision"),
            col("prompt_tokens", "int4", "integer"),
            col("completion_tokens", "int4", "integer"),
            col("startTime", "timestamp", "timestamp(3) without time zone"),
            col("model", "text", "text"),
            col("metadata", "jsonb", "jsonb"),
            col("request_tags", "jsonb", "jsonb"),
            col("team_id", "text", "text"),
            col("end_user", "text", "text"),
        ]
    }

    #[test]
    fn specs_parse_and_render_quoted() {
        let s = ColumnSpec::parse("Feature_Name").unwrap();
        assert_eq!(s, ColumnSpec::column("feature_name"));
        assert_eq!(s.sql(), "e.\"feature_name\"");
        let s = ColumnSpec::parse("\"startTime\"").unwrap();
        assert_eq!(s.column, "startTime");
        assert_eq!(s.to_string(), "\"startTime\"");
        let s = ColumnSpec::parse("metadata -> 'feature'").unwrap();
        assert_eq!(s.path, vec![JsonStep::Key("feature".into())]);
        assert_eq!(s.sql(), "(e.\"metadata\" ->> 'feature')");
        let s = ColumnSpec::parse("request_tags->0").unwrap();
        assert_eq!(s.sql(), "(e.\"request_tags\" ->> 0)");
        let s = ColumnSpec::parse("m -> 'a''b' ->> 2").unwrap();
        assert_eq!(s.sql(), "(e.\"m\" -> 'a''b' ->> 2)");
        assert_eq!(ColumnSpec::parse(&s.to_string()).unwrap(), s);
        let s = ColumnSpec::parse("\"we\"\"ird\"").unwrap();
        assert_eq!(s.sql(), "e.\"we\"\"ird\"");
    }

    #[test]
    fn hostile_specs_are_refused() {
        for bad in [
            "",
            "cost_usd; DROP TABLE x",
            "cost_usd::text",
            "coalesce(cost_usd, 0)",
            "a b",
            "meta -> feature",
            "meta -> 'x' || 'y'",
            "meta -> 'unterminated",
            "meta -> 'back\\slash'",
            "meta ->",
            "\"\"",
            "\"open",
            "1col",
            "meta -> 99999999999",
            &"x".repeat(64),
        ] {
            assert!(ColumnSpec::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn the_burnrate_preset_is_our_schema() {
        let m = MapSpec::default();
        assert!(m.strict_burnrate);
        assert_eq!(m.table, "cost_events");
        assert_eq!(m.entry(Field::Cost).unwrap().spec.column, "cost_usd");
        assert_eq!(
            m.entry(Field::Order).unwrap().origin,
            EntryOrigin::Preset { required: true }
        );
    }

    #[test]
    fn litellm_resolves_to_a_keyset_on_start_time_and_request_id() {
        let m = MapSpec::build(&SourceConfig::default(), Some(Preset::Litellm), "x").unwrap();
        assert_eq!(m.table, "\"LiteLLM_SpendLogs\"");
        let r = resolve(&m, &litellm_columns()).unwrap();
        assert!(r.ts_naive);
        assert_eq!(r.ts_column, "e.\"startTime\"");
        assert_eq!(r.cost_kind, CostKind::Float);
        assert_eq!(
            r.order,
            RowOrder::Keyset {
                key: "e.\"request_id\"".into()
            }
        );
        assert_eq!(r.mode(), TailMode::KeysetOverlap);
        assert_eq!(r.names[0].as_deref(), Some("(e.\"request_tags\" ->> 0)"));
        assert_eq!(r.names[4], None, "no region in LiteLLM");
        assert!(r.unmapped.contains(&Field::Region));
        assert_eq!(r.ts_value("$1"), "($1::timestamptz AT TIME ZONE 'UTC')");
    }

    #[test]
    fn overrides_replace_the_preset_and_must_exist() {
        let mut src = SourceConfig {
            preset: Preset::Litellm,
            ..Default::default()
        };
        src.columns.feature = Some("metadata -> 'feature'".into());
        src.columns.tenant = Some(String::new());
        let m = MapSpec::build(&src, None, "x").unwrap();
        assert!(!m.strict_burnrate);
        let r = resolve(&m, &litellm_columns()).unwrap();
        assert_eq!(
            r.names[0].as_deref(),
            Some("(e.\"metadata\" ->> 'feature')")
        );
        assert_eq!(r.names[3], None);

        src.columns.user = Some("end_usr".into());
        let err = resolve(
            &MapSpec::build(&src, None, "x").unwrap(),
            &litellm_columns(),
        )
        .unwrap_err();
        assert!(err.contains("source.columns.user"), "{err}");
        assert!(err.contains("no column end_usr"), "{err}");
        assert!(err.contains("end_user (text)"), "lists the columns: {err}");

        src.columns.user = None;
        src.columns.timestamp = Some("starttime".into());
        let err = resolve(
            &MapSpec::build(&src, None, "x").unwrap(),
            &litellm_columns(),
        )
        .unwrap_err();
        assert!(err.contains("did you mean \"startTime\""), "{err}");
    }

    #[test]
    fn mistyped_maps_say_expected_and_found() {
        let mut src = SourceConfig {
            preset: Preset::Litellm,
            ..Default::default()
        };
        src.columns.cost = Some("model".into());
        let err = resolve(
            &MapSpec::build(&src, None, "x").unwrap(),
            &litellm_columns(),
        )
        .unwrap_err();
        assert!(
            err.contains("source.columns.cost")
                && err.contains("has type text")
                && err.contains("expected numeric"),
            "{err}"
        );
        src.columns.cost = None;
        src.columns.feature = Some("metadata".into());
        let err = resolve(
            &MapSpec::build(&src, None, "x").unwrap(),
            &litellm_columns(),
        )
        .unwrap_err();
        assert!(err.contains("needs a key path"), "{err}");
        src.columns.feature = Some("model -> 'x'".into());
        let err = resolve(
            &MapSpec::build(&src, None, "x").unwrap(),
            &litellm_columns(),
        )
        .unwrap_err();
        assert!(err.contains("needs a json or jsonb column"), "{err}");
        src.columns.feature = None;
        src.columns.cost = Some("metadata -> 'cost'".into());
        let err = MapSpec::build(&src, None, "x").unwrap_err();
        assert!(err.contains("only for"), "{err}");
        src.columns.cost = None;
        src.columns.request_id = Some(String::new());
        // No key left: the window is re-aggregated (issue 16, item 17).
        let r = resolve(
            &MapSpec::build(&src, None, "x").unwrap(),
            &litellm_columns(),
        )
        .unwrap();
        assert_eq!(r.order, RowOrder::Window);
    }

    #[test]
    fn the_seed_preset_takes_what_the_table_has() {
        let m =
            MapSpec::build(&SourceConfig::default(), Some(Preset::Seed), "cost_events").unwrap();
        let cols = vec![
            col("id", "int4", "integer"),
            col("timestamp", "timestamp", "timestamp without time zone"),
            col("feature_name", "varchar", "character varying(100)"),
            col("cost_usd", "numeric", "numeric(10,6)"),
        ];
        let r = resolve(&m, &cols).unwrap();
        assert!(r.ts_naive);
        assert_eq!(
            r.order,
            RowOrder::Id {
                id: "e.\"id\"".into()
            }
        );
        assert_eq!(r.names[1], None);
        assert!(r.unmapped.contains(&Field::User) && r.unmapped.contains(&Field::Tx));
        // The article's table as written (no id): watched in place.
        let r = resolve(&m, &cols[1..]).unwrap();
        assert_eq!(r.order, RowOrder::Window);
        assert_eq!(r.mode(), TailMode::WindowOverlap);
    }

    #[test]
    fn misspelt_and_missing_columns_get_the_likely_fix() {
        let cols = vec![
            col("timestamp", "timestamptz", "timestamp with time zone"),
            col("user_id", "text", "text"),
            col("cost", "numeric", "numeric"),
            col("prompt_tokens", "int4", "integer"),
            col("id", "int8", "bigint"),
        ];
        assert_eq!(edit_distance("user_idd", "user_id"), 1);
        assert_eq!(closest_column("user_idd", &cols).unwrap().name, "user_id");
        assert_eq!(closest_column("USER_ID", &cols).unwrap().name, "user_id");
        assert!(closest_column("tenant", &cols).is_none(), "nothing near");
        let likely: Vec<&str> = likely_columns(Field::Cost, &cols)
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            likely,
            ["cost"],
            "numeric and named like a cost; tokens are not"
        );
        let advice = missing_column_advice("cost_usd", &cols);
        assert!(
            advice.contains("[source.columns] cost = \"cost\""),
            "{advice}"
        );
        assert!(!advice.contains("db init"), "{advice}");
        let none = missing_column_advice("cost_usd", &cols[..2]);
        assert!(
            none.contains("Only if whatever writes the rows will fill"),
            "{none}"
        );
        assert!(missing_column_advice("tx", &[]).contains("filled by the database"));
    }
}
