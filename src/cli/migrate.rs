//! `kong-audit-shipper migrate-poc-keys`: the switch from Kong's 2023 proof of concept without
//! shipping its 30 days of requests again.

use std::process::ExitCode;

use crate::config::Settings;
use crate::dedup::RedisStore;

pub async fn main(settings: &Settings) -> ExitCode {
    let redis = match settings.redis_config() {
        Ok(Some(r)) => r,
        Ok(None) => {
            eprintln!("kong-audit-shipper: REDIS_URL (or REDIS_HOST): not set; point it at the proof of concept's Redis and database");
            return ExitCode::from(super::EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("kong-audit-shipper: {e}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    let store = match RedisStore::connect(&redis).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kong-audit-shipper: {e}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    match store.import_proof_of_concept_marks(&settings.redis_key_prefix).await {
        Ok((imported, present)) => {
            println!(
                "imported {imported} request marks of the proof of concept ({present} were already present) into {}; \
                 objects were never shipped by it and will be shipped by the next run",
                redis.display_url()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kong-audit-shipper: {e}");
            ExitCode::from(super::EXIT_INCOMPLETE)
        }
    }
}
