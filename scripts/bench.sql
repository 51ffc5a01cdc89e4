-- SQL of the benchmark suite (scripts/bench, examples/bench.rs), one statement per
-- `-- name:` section. The bench runs these by name against its own database,
-- burnrate_bench (burnrate_bench_highcard with --highcard), which it drops and
-- recreates: it never touches another database. `{database}` stands for that name.
--
-- The seed_* queries are RECONSTRUCTED, NOT VERBATIM. The seed article's SQL is not
-- available to us (its page is not in our stored copies), so these are the plain
-- GROUP BY queries its dashboard describes: cost by feature per day over 30 days,
-- the top 5 cost drivers this week, and cost per request per day over 30 days. A
-- dashboard without a monitor runs all three on every page load or refresh.

-- name: seed_cost_by_feature_per_day
-- (reconstructed) cost by feature per day, last 30 days
SELECT date_trunc('day', "timestamp") AS day,
       feature_name,
       sum(cost_usd) AS cost_usd,
       count(*) AS requests
FROM cost_events
WHERE "timestamp" >= now() - interval '30 days'
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: seed_top_cost_drivers_week
-- (reconstructed) top 5 cost drivers (users) this week
SELECT user_id,
       sum(cost_usd) AS cost_usd,
       count(*) AS requests
FROM cost_events
WHERE "timestamp" >= now() - interval '7 days'
GROUP BY user_id
ORDER BY cost_usd DESC
LIMIT 5;

-- name: seed_cost_per_request_per_day
-- (reconstructed) cost per request per day, last 30 days
SELECT date_trunc('day', "timestamp") AS day,
       sum(cost_usd) / count(*) AS cost_per_request
FROM cost_events
WHERE "timestamp" >= now() - interval '30 days'
GROUP BY 1
ORDER BY 1;

-- name: bare_scan
-- the physical floor: one sequential scan of the whole table
SELECT sum(cost_usd), count(*) FROM cost_events;

-- name: drop_database
DROP DATABASE IF EXISTS {database} WITH (FORCE);

-- name: create_database
CREATE DATABASE {database};

-- name: database_exists
SELECT count(*) FROM pg_database WHERE datname = '{database}';

-- name: vacuum_analyze
VACUUM (ANALYZE) cost_events;

-- name: server_version
SELECT current_setting('server_version'), current_setting('shared_buffers');

-- name: data_set
-- what was loaded: rows, distinct names per dimension, time span, size on disk
SELECT count(*),
       count(DISTINCT user_id),
       count(DISTINCT feature_name),
       count(DISTINCT model),
       count(DISTINCT tenant_id),
       count(DISTINCT region),
       min("timestamp")::text,
       max("timestamp")::text,
       pg_size_pretty(pg_total_relation_size('cost_events'))
FROM cost_events;

-- name: combinations
-- (hour, five names) groups of the whole table: the store's cells today (one server
-- GROUP BY, as the backfill does in six-hour chunks)
SELECT count(*)
FROM (SELECT 1
      FROM cost_events
      GROUP BY date_trunc('hour', "timestamp"), feature_name, user_id, model, tenant_id, region) AS g;

-- name: highcard_session
-- the loader's session: its batches need not wait for the WAL flush
SET synchronous_commit = off;

-- name: highcard_insert
-- The high-cardinality data set of issue 17, generated on the server, one batch of
-- rows $1 .. $2 - 1 of $3 per statement (one transaction each, so the tx column
-- varies as with real writers). Row i is at $4 + (i + jitter) * $5 / $3 seconds
-- since the epoch: spread evenly over the span, in time order (as rows arrive).
-- Every name is drawn independently from a deterministic hash of i
-- (hashint8extended with seeds 1..8, 53 bits as a uniform in [0, 1)), so the
-- same i gives the same row in every load and nearly every row is its own
-- (hour, five names) combination:
-- - users: 50,000, Zipf with exponent 1 (rank floor(50001^u): the busiest has
--   about 6% of the rows), rank r named user_<(r - 1) * 7919 mod 50000 + 1>,
--   five digits as the simulator names them;
-- - features: the simulator's 14 with their traffic shares, the six busiest split
--   in halves as `<feature>_beta` (as the reference data set does): 20;
-- - models: the simulator's 8 with their list prices, weights 15/30/12/12/6/12/5/8 %;
-- - regions: 3, weights 50/30/20 %; tenants: 5, weights 40/25/20/10/5 %;
-- - tokens: log-uniform, 100-9,999 in and 5-1,499 out; cost_usd exact (numeric),
--   tokens times the model's price per token.
INSERT INTO cost_events ("timestamp", feature_name, cost_usd, user_id, model, region, tenant_id,
                         input_tokens, output_tokens, request_id)
SELECT to_timestamp($4::float8 + (i + u_time) * $5::float8 / $3::float8),
       (ARRAY['support_qa','support_qa_beta','chat','chat_beta','summarize','summarize_beta',
              'search_rerank','search_rerank_beta','code_review','translate','extract_entities',
              'extract_entities_beta','classify_ticket','classify_ticket_beta','draft_email',
              'sql_assistant','doc_qa_rag','agent_planner','sentiment','moderation'])
         [width_bucket(u_feature, ARRAY[0.0,0.078431,0.156863,0.25,0.343137,0.392157,0.441176,
              0.504902,0.568627,0.617647,0.666667,0.70098,0.735294,0.77451,0.813725,0.852941,
              0.882353,0.931373,0.946078,0.970588]::float8[])],
       tokens_in * (ARRAY[0.0000025,0.00000015,0.000003,0.0000008,0.00000125,0.000000075,
                          0.0000011,0.00000088]::numeric[])[m]
         + tokens_out * (ARRAY[0.00001,0.0000006,0.000015,0.000004,0.000005,0.0000003,
                               0.0000044,0.00000088]::numeric[])[m],
       'user_' || lpad(((user_rank - 1) * 7919 % 50000 + 1)::text, 5, '0'),
       (ARRAY['gpt-4o','gpt-4o-mini','claude-sonnet-4','claude-haiku-3.5','gemini-1.5-pro',
              'gemini-1.5-flash','o3-mini','llama-3.1-70b'])[m],
       (ARRAY['us-east-1','eu-west-1','ap-southeast-1'])
         [width_bucket(u_region, ARRAY[0.0,0.5,0.8]::float8[])],
       (ARRAY['acme','globex','initech','umbrella','hooli'])
         [width_bucket(u_tenant, ARRAY[0.0,0.4,0.65,0.85,0.95]::float8[])],
       tokens_in,
       tokens_out,
       'hc_' || lpad(to_hex(i), 16, '0')
FROM (
    SELECT i, u_time, u_feature, u_region, u_tenant,
           least(50000, floor(exp(u_user * ln(50001.0)))::int) AS user_rank,
           width_bucket(u_model, ARRAY[0.0,0.15,0.45,0.57,0.69,0.75,0.87,0.92]::float8[]) AS m,
           floor(exp(ln(100.0) + u_in * ln(100.0)))::bigint AS tokens_in,
           floor(exp(ln(5.0) + u_out * ln(300.0)))::bigint AS tokens_out
    FROM (
        SELECT i,
               ((hashint8extended(i, 1) >> 11) & 9007199254740991)::float8 / 9007199254740992 AS u_time,
               ((hashint8extended(i, 2) >> 11) & 9007199254740991)::float8 / 9007199254740992 AS u_user,
               ((hashint8extended(i, 3) >> 11) & 9007199254740991)::float8 / 9007199254740992 AS u_feature,
               ((hashint8extended(i, 4) >> 11) & 9007199254740991)::float8 / 9007199254740992 AS u_model,
               ((hashint8extended(i, 5) >> 11) & 9007199254740991)::float8 / 9007199254740992 AS u_region,
               ((hashint8extended(i, 6) >> 11) & 9007199254740991)::float8 / 9007199254740992 AS u_tenant,
               ((hashint8extended(i, 7) >> 11) & 9007199254740991)::float8 / 9007199254740992 AS u_in,
               ((hashint8extended(i, 8) >> 11) & 9007199254740991)::float8 / 9007199254740992 AS u_out
        FROM generate_series($1::bigint, $2::bigint - 1) AS g(i)
    ) AS uniform
) AS drawn;
