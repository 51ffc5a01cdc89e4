//! burnrate: a live terminal monitor for LLM spend.
//!
//! Data flows one way: `source` (PostgreSQL or the demo stream) -> `store` (rolling
//! aggregates) -> `detect` (anomalies, forecast) -> `app` / `snapshot` -> `ui`.
//! Only `ui` draws with ratatui; only `source` speaks SQL.

pub mod alert;
pub mod app;
pub mod backtest;
pub mod calendar;
pub mod cli;
pub mod commands;
pub mod config;
pub mod detect;
pub mod logging;
pub mod model;
pub mod money;
pub mod report;
pub mod sim;
pub mod source;
pub mod store;
pub mod ui;
