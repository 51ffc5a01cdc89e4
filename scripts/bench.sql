-- SQL of the benchmark suite (scripts/bench, examples/bench.rs), one statement per
-- `-- name:` section. The bench runs these by name against its own database,
-- burnrate_bench, which it drops and recreates: it never touches another database.
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
DROP DATABASE IF EXISTS burnrate_bench WITH (FORCE);

-- name: create_database
CREATE DATABASE burnrate_bench;

-- name: database_exists
SELECT count(*) FROM pg_database WHERE datname = 'burnrate_bench';

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
