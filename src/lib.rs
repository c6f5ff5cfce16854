//! kong-audit-shipper: ships Kong Gateway Enterprise's Admin API audit trail to AWS CloudTrail Lake,
//! exactly once (and Kong Konnect's audit log). One library cycle (`ship`) serves every entry point:
//! the Lambda handler and the CLI.

pub mod cli;
pub mod config;
pub mod dead_letter;
pub mod dedup;
pub mod error_text;
pub mod event;
pub mod http_answer;
pub mod kong;
pub mod konnect;
pub mod lambda;
pub mod logging;
pub mod reconcile;
pub mod redrive;
pub mod retry;
pub mod runner;
pub mod secret;
pub mod setup;
pub mod ship;
pub mod signature;
pub mod sink;
pub mod summary;
