//! Tables made by other products, as those products make and fill them, for the
//! preset and doctor tests.
#![allow(dead_code)]

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use tokio_postgres::Client;

/// `"LiteLLM_SpendLogs"` exactly as `prisma migrate` creates it from LiteLLM's
/// schema.prisma (BerriAI/litellm, `model LiteLLM_SpendLogs`): String -> TEXT,
/// Float -> DOUBLE PRECISION, Int -> INTEGER, DateTime -> TIMESTAMP(3) (without time
/// zone), Json -> JSONB, `@id` -> a primary key constraint, `@@index` -> indexes
/// named <Model>_<fields>_idx.
pub const LITELLM_DDL: &str = r#"
CREATE TABLE "LiteLLM_SpendLogs" (
    "request_id" TEXT NOT NULL,
    "call_type" TEXT NOT NULL,
    "api_key" TEXT NOT NULL DEFAULT '',
    "spend" DOUBLE PRECISION NOT NULL DEFAULT 0.0,
    "total_tokens" INTEGER NOT NULL DEFAULT 0,
    "prompt_tokens" INTEGER NOT NULL DEFAULT 0,
    "completion_tokens" INTEGER NOT NULL DEFAULT 0,
    "startTime" TIMESTAMP(3) NOT NULL,
    "endTime" TIMESTAMP(3) NOT NULL,
    "request_duration_ms" INTEGER,
    "completionStartTime" TIMESTAMP(3),
    "model" TEXT NOT NULL DEFAULT '',
    "model_id" TEXT DEFAULT '',
    "model_group" TEXT DEFAULT '',
    "custom_llm_provider" TEXT DEFAULT '',
    "api_base" TEXT DEFAULT '',
    "user" TEXT DEFAULT '',
    "metadata" JSONB DEFAULT '{}',
    "cache_hit" TEXT DEFAULT '',
    "cache_key" TEXT DEFAULT '',
    "request_tags" JSONB DEFAULT '[]',
    "team_id" TEXT,
    "organization_id" TEXT,
    "end_user" TEXT,
    "requester_ip_address" TEXT,
    "messages" JSONB DEFAULT '{}',
    "response" JSONB DEFAULT '{}',
    "session_id" TEXT,
    "status" TEXT,
    "mcp_namespaced_tool_name" TEXT,
    "agent_id" TEXT,
    "proxy_server_request" JSONB DEFAULT '{}',
    CONSTRAINT "LiteLLM_SpendLogs_pkey" PRIMARY KEY ("request_id")
);
CREATE INDEX "LiteLLM_SpendLogs_startTime_idx" ON "LiteLLM_SpendLogs"("startTime");
CREATE INDEX "LiteLLM_SpendLogs_startTime_request_id_idx" ON "LiteLLM_SpendLogs"("startTime", "request_id");
CREATE INDEX "LiteLLM_SpendLogs_end_user_idx" ON "LiteLLM_SpendLogs"("end_user");
CREATE INDEX "LiteLLM_SpendLogs_session_id_idx" ON "LiteLLM_SpendLogs"("session_id");
"#;

/// The seed article's table: a serial id, a timestamp, the feature and the cost,
/// and nothing else.
pub const SEED_DDL: &str = "CREATE TABLE cost_events (\
    id SERIAL PRIMARY KEY, \
    timestamp TIMESTAMP NOT NULL DEFAULT NOW(), \
    feature_name VARCHAR(100), \
    cost_usd DECIMAL(10, 6) NOT NULL)";

/// A naive UTC time, as LiteLLM stores `startTime`.
pub fn naive(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc()
}

/// One spend log row shaped as LiteLLM writes it. `i` picks the shape: NULL
/// end_user and team_id, empty or NULL tags, mixed-case models and tags, zero spend
/// (cache hits), JSON metadata.
pub async fn litellm_row(c: &impl tokio_postgres::GenericClient, i: u32, at: DateTime<Utc>) {
    let models = [
        "gpt-4o",
        "GPT-4o-Mini",
        "claude-3-5-sonnet-20241022",
        "azure/gpt-4o",
    ];
    let model = models[(i % 4) as usize];
    // Whole nano-dollars: the float's 15 significant digits are the exact value.
    let spend = if i % 9 == 0 {
        0.0
    } else {
        f64::from((i * 7919) % 900_000 + 17) / 1e9
    };
    let tags: Option<String> = match i % 6 {
        0 => None,
        1 => Some(serde_json::json!([]).to_string()),
        2 => Some(serde_json::json!(["Support_QA", "prod"]).to_string()),
        3 => Some(serde_json::json!(["doc-qa", "staging", "eu"]).to_string()),
        _ => Some(serde_json::json!(["Chat"]).to_string()),
    };
    let team: Option<&str> = match i % 4 {
        0 => None,
        1 => Some("team-Alpha"),
        _ => Some("team_beta"),
    };
    let end_user: Option<String> = (i % 5 != 0).then(|| format!("Customer_{}", i % 7));
    let prompt = ((i * 31) % 4000) as i32;
    let completion = ((i * 17) % 900) as i32;
    let metadata = serde_json::json!({
        "user_api_key_alias": format!("key-{}", i % 3),
        "feature": format!("feat_{}", i % 3),
        "spend_logs_metadata": null,
    })
    .to_string();
    c.execute(
        r#"INSERT INTO "LiteLLM_SpendLogs" ("request_id", "call_type", "api_key", "spend",
             "total_tokens", "prompt_tokens", "completion_tokens", "startTime", "endTime",
             "model", "model_group", "custom_llm_provider", "user", "metadata", "cache_hit",
             "request_tags", "team_id", "end_user", "status")
           VALUES ($1, 'acompletion', $2, $3, $4, $5, $6, $7, $8, $9, $9, 'openai', '', $10::text::jsonb,
                   $11, $12::text::jsonb, $13, $14, 'success')"#,
        &[
            &format!("chatcmpl-{i:05}-aBcD"),
            &format!("88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4{}", i % 10),
            &spend,
            &(prompt + completion),
            &prompt,
            &completion,
            &naive(at),
            &naive(at + Duration::milliseconds(1234)),
            &model,
            &metadata,
            &if spend == 0.0 { "True" } else { "False" },
            &tags,
            &team,
            &end_user,
        ],
    )
    .await
    .expect("insert a LiteLLM spend log");
}

/// Per first tag, from SQL: exact sums of the float spend as numeric.
pub async fn litellm_by_feature(
    c: &Client,
) -> std::collections::BTreeMap<String, burnrate::model::Agg> {
    let rows = c
        .query(
            r#"SELECT coalesce("request_tags" ->> 0, ''), sum("spend"::numeric)::text, count(*),
                      coalesce(sum("prompt_tokens"), 0)::int8, coalesce(sum("completion_tokens"), 0)::int8
               FROM "LiteLLM_SpendLogs" GROUP BY 1"#,
            &[],
        )
        .await
        .expect("ground truth");
    super::pg_common::named_aggs(&rows)
}

/// Runs the binary with a config file of its own; (exit code, stdout, stderr).
pub fn burnrate(url: &str, config_text: &str, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("burnrate.toml");
    std::fs::write(&config, config_text).expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_burnrate"))
        .args(args)
        .args(["--database-url", url, "--config", config.to_str().unwrap()])
        .env("XDG_STATE_HOME", dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("BURNRATE_CONFIG")
        .output()
        .expect("run burnrate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
