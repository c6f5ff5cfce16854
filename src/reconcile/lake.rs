//! CloudTrail Lake: which of this shipper's events the channel's event data store holds, by SQL.
//!
//! The store comes from the channel (`GetChannel`, its destinations of type `EVENT_DATA_STORE`) or
//! from `EVENT_DATA_STORE`. The span to ask about is cut into one query per day of ingestion time
//! (Lake prunes its scan by the top-level `eventTime`; whether that is the event's own time or the
//! time of ingestion is not documented, so the span reaches from the scope's start to now, padded),
//! each query filtered to the scope by `eventData.eventTime` and grouped by entry and part. At most
//! `concurrency` queries run at once (Lake allows 10 per account); a query that times out is split
//! in two; results are paged 1,000 rows at a time and their count checked against what Lake says it
//! returned. `BytesScanned`, which Lake bills, is summed for the report.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_cloudtrail::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudtrail::types::{DestinationType, QueryStatus};
use tokio::task::JoinSet;

use super::holdings::{HeldEvents, Holdings, Scope};
use super::inventory::{Answer, Inventory, InventoryError, QueryRecord, padded, rfc3339, slices};
use crate::kong::EntryKind;
use crate::retry::Backoff;

/// Rows per `GetQueryResults` page (Lake's maximum).
pub const PAGE_ROWS: i32 = 1_000;
/// Lake's limit of queries running at once in an account.
pub const MAX_CONCURRENT_QUERIES: usize = 10;
const DAY: i64 = 86_400;
/// A query that timed out is split in two down to this span.
const SMALLEST_SLICE: i64 = 3_600;
/// The longest wait between two looks at a running query.
const MAX_POLL_WAIT: Duration = Duration::from_secs(5);

/// An event data store, as the query's `FROM` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// The id (the last part of its ARN).
    pub id: String,
    /// The ARN, when known (from the channel, or given as one).
    pub arn: Option<String>,
}

impl Store {
    /// From an ARN (`arn:aws:cloudtrail:REGION:ACCOUNT:eventdatastore/ID`) or a bare id.
    pub fn parse(text: &str) -> Result<Store, String> {
        let text = text.trim();
        let (id, arn) = match text.strip_prefix("arn:") {
            Some(_) => {
                let id = text.split_once(":eventdatastore/").map(|(_, id)| id).ok_or_else(|| {
                    format!("'{text}' is not an event data store ARN (arn:aws:cloudtrail:REGION:ACCOUNT:eventdatastore/ID)")
                })?;
                (id, Some(text.to_string()))
            }
            None => (text, None),
        };
        // The id goes into SQL: only what Lake's ids are made of.
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("'{id}' is not an event data store id (letters, digits and '-')"));
        }
        Ok(Store { id: id.to_string(), arn })
    }

    /// The store's region, from its ARN.
    pub fn region(&self) -> Option<&str> {
        self.arn.as_deref().and_then(|a| a.split(':').nth(3)).filter(|r| !r.is_empty())
    }

    fn name(&self) -> &str {
        self.arn.as_deref().unwrap_or(&self.id)
    }
}

/// The query for one slice of ingestion time `[from, to)`, limited to the events of `event_source`
/// (Kong's, or Konnect's) whose own `eventTime` is in `[since, until)`.
pub fn statement(store: &Store, (from, to): (i64, i64), (since, until): (i64, i64), event_source: &str) -> String {
    let lake_time = |t: i64| {
        chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0)
            .unwrap_or_default()
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let event_time = |t: i64| crate::event::format_event_time(t);
    format!(
        "SELECT eventData.uid AS uid, \
element_at(eventData.additionalEventData, 'kongEntryKind') AS kind, \
element_at(eventData.additionalEventData, 'kongAuditEntryPart') AS part, \
element_at(eventData.additionalEventData, 'kongAuditEntryParts') AS parts, \
min(eventData.eventTime) AS event_time, count(*) AS events \
FROM {} \
WHERE eventTime >= '{}' AND eventTime < '{}' \
AND eventData.eventSource = '{event_source}' \
AND eventData.eventTime >= '{}' AND eventData.eventTime < '{}' \
GROUP BY 1, 2, 3, 4",
        store.id,
        lake_time(from),
        lake_time(to),
        event_time(since),
        event_time(until)
    )
}

/// One result row (a list of one-column maps, as Lake returns them) as held events.
pub fn parse_row(row: &[HashMap<String, String>]) -> Option<HeldEvents> {
    let column = |name: &str| row.iter().find_map(|c| c.get(name)).map(String::as_str).filter(|v| !v.is_empty());
    let number = |name: &str| {
        column(name).and_then(|v| {
            v.parse::<u64>()
                .ok()
                .or_else(|| v.parse::<f64>().ok().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))
        })
    };
    let kind = match column("kind")? {
        "request" => EntryKind::Request,
        "object" => EntryKind::Object,
        "konnect" => EntryKind::Konnect,
        _ => return None,
    };
    Some(HeldEvents {
        kind,
        uid: column("uid")?.to_string(),
        part: number("part").map(|p| p.min(u64::from(u32::MAX)) as u32),
        parts: number("parts").map(|p| p.min(u64::from(u32::MAX)) as u32),
        event_time: column("event_time")
            .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%SZ").ok())
            .map(|t| t.and_utc().timestamp()),
        count: number("events").unwrap_or(1),
    })
}

// ---------------------------------------------------------------- the calls

/// Why a call failed, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFail {
    /// Too many queries run in the account: wait for one to end.
    Busy,
    /// Slow down, or a failure a retry may fix.
    Transient(String),
    /// Only a change of permissions or settings fixes it.
    Denied(String),
    /// No credentials to sign the call with: nothing else this run does can reach AWS either.
    Unsigned(String),
    /// The request itself is wrong (a bug, or a store that cannot be queried).
    Invalid(String),
}

/// Where a query stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryState {
    Running,
    Finished { bytes_scanned: u64 },
    TimedOut,
    Failed(String),
}

/// One page of a finished query's results.
#[derive(Debug, Clone, Default)]
pub struct ResultsPage {
    pub rows: Vec<Vec<HashMap<String, String>>>,
    pub next_token: Option<String>,
    /// How many rows the whole query returned, as Lake counts them.
    pub total_rows: Option<u64>,
}

/// The CloudTrail calls reconciliation makes; `SdkLake` is the real one.
#[async_trait]
pub trait LakeApi: Send + Sync {
    /// The event data stores a channel delivers to.
    async fn channel_stores(&self, channel_arn: &str) -> Result<Vec<String>, CallFail>;
    async fn start_query(&self, store: &Store, statement: &str) -> Result<String, CallFail>;
    async fn describe_query(&self, store: &Store, query_id: &str) -> Result<QueryState, CallFail>;
    async fn results(&self, store: &Store, query_id: &str, next_token: Option<&str>) -> Result<ResultsPage, CallFail>;
    async fn cancel_query(&self, store: &Store, query_id: &str) -> Result<(), CallFail>;
}

/// The real service, through the AWS SDK (`AWS_ENDPOINT_URL_CLOUDTRAIL` overrides its endpoint).
pub struct SdkLake {
    sdk: aws_config::SdkConfig,
    default_region: String,
    clients: std::sync::Mutex<HashMap<String, aws_sdk_cloudtrail::Client>>,
}

impl SdkLake {
    /// Calls go to each store's own region, and for the channel to `default_region` (the channel's).
    pub fn new(sdk: &aws_config::SdkConfig, default_region: &str) -> SdkLake {
        SdkLake {
            sdk: sdk.clone(),
            default_region: default_region.to_string(),
            clients: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, region: Option<&str>) -> aws_sdk_cloudtrail::Client {
        let region = region.unwrap_or(&self.default_region).to_string();
        let mut clients = self.clients.lock().unwrap();
        clients
            .entry(region.clone())
            .or_insert_with(|| {
                let conf = aws_sdk_cloudtrail::config::Builder::from(&self.sdk)
                    .region(aws_sdk_cloudtrail::config::Region::new(region))
                    .build();
                aws_sdk_cloudtrail::Client::from_conf(conf)
            })
            .clone()
    }
}

/// An SDK error, decided. `action` is the IAM action the call needs.
fn decide<E>(action: &str, target: &str, err: &SdkError<E, aws_sdk_cloudtrail::config::http::HttpResponse>) -> CallFail
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = crate::error_text::sdk(err);
    if crate::sink::credentials::involved(err) {
        return CallFail::Unsigned(format!(
            "{action} could not be signed: {} ({detail})",
            crate::sink::credentials::HINT
        ));
    }
    let (code, status) = match err {
        SdkError::ServiceError(ctx) => (ctx.err().code().unwrap_or_default().to_string(), ctx.raw().status().as_u16()),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return CallFail::Transient(format!("{action}: no answer: {detail}"));
        }
        _ => return CallFail::Denied(format!("{action} could not be sent (AWS credentials or region?): {detail}")),
    };
    match code.as_str() {
        "MaxConcurrentQueriesException" => CallFail::Busy,
        "ThrottlingException" | "TooManyRequestsException" | "ServiceUnavailableException" | "InternalServerException" => {
            CallFail::Transient(format!("{action}: {detail}"))
        }
        "AccessDeniedException" | "AccessDenied" | "UnauthorizedException" | "InsufficientEncryptionPolicyException" => {
            CallFail::Denied(format!(
                "{action} on {target} is not allowed: grant the role {action} on it (and kms:Decrypt when the store has its own KMS key); the Terraform module does ({detail})"
            ))
        }
        "EventDataStoreNotFoundException" | "EventDataStoreARNInvalidException" | "EventDataStoreArnInvalidException" => CallFail::Denied(
            format!("the event data store {target} does not exist: check EVENT_DATA_STORE, or the channel's destinations ({detail})"),
        ),
        "InactiveEventDataStoreException" => CallFail::Denied(format!("the event data store {target} is not active ({detail})")),
        "ChannelNotFoundException" | "ChannelARNInvalidException" => {
            CallFail::Denied(format!("the channel {target} does not exist: check CHANNEL_ARN ({detail})"))
        }
        "UnrecognizedClientException" | "InvalidSignatureException" | "ExpiredTokenException" => {
            CallFail::Denied(format!("AWS credentials are invalid or expired ({detail})"))
        }
        _ if status == 429 || status >= 500 => CallFail::Transient(format!("{action}: {detail}")),
        _ => CallFail::Invalid(format!("{action} on {target} refused: {detail}")),
    }
}

#[async_trait]
impl LakeApi for SdkLake {
    async fn channel_stores(&self, channel_arn: &str) -> Result<Vec<String>, CallFail> {
        let region = channel_arn.split(':').nth(3).filter(|r| !r.is_empty());
        let out = self
            .client(region)
            .get_channel()
            .channel(channel_arn)
            .send()
            .await
            .map_err(|e| decide("cloudtrail:GetChannel", channel_arn, &e))?;
        Ok(out
            .destinations()
            .iter()
            .filter(|d| *d.r#type() == DestinationType::EventDataStore)
            .map(|d| d.location().to_string())
            .collect())
    }

    async fn start_query(&self, store: &Store, statement: &str) -> Result<String, CallFail> {
        let out = self
            .client(store.region())
            .start_query()
            .query_statement(statement)
            .send()
            .await
            .map_err(|e| decide("cloudtrail:StartQuery", store.name(), &e))?;
        out.query_id()
            .map(str::to_string)
            .ok_or_else(|| CallFail::Transient("StartQuery answered without a query id".into()))
    }

    async fn describe_query(&self, store: &Store, query_id: &str) -> Result<QueryState, CallFail> {
        let out = self
            .client(store.region())
            .describe_query()
            .query_id(query_id)
            .send()
            .await
            .map_err(|e| decide("cloudtrail:DescribeQuery", store.name(), &e))?;
        let error = || out.error_message().unwrap_or("no reason given").to_string();
        Ok(match out.query_status() {
            Some(QueryStatus::Finished) => QueryState::Finished {
                bytes_scanned: out.query_statistics().and_then(|s| s.bytes_scanned()).unwrap_or(0).max(0) as u64,
            },
            Some(QueryStatus::TimedOut) => QueryState::TimedOut,
            Some(QueryStatus::Failed) => QueryState::Failed(error()),
            Some(QueryStatus::Cancelled) => QueryState::Failed(format!("the query was cancelled: {}", error())),
            _ => QueryState::Running,
        })
    }

    async fn results(&self, store: &Store, query_id: &str, next_token: Option<&str>) -> Result<ResultsPage, CallFail> {
        let out = self
            .client(store.region())
            .get_query_results()
            .query_id(query_id)
            .max_query_results(PAGE_ROWS)
            .set_next_token(next_token.map(str::to_string))
            .send()
            .await
            .map_err(|e| decide("cloudtrail:GetQueryResults", store.name(), &e))?;
        if let Some(message) = out.error_message().filter(|m| !m.is_empty()) {
            return Err(CallFail::Invalid(format!("GetQueryResults: {message}")));
        }
        Ok(ResultsPage {
            rows: out.query_result_rows().to_vec(),
            next_token: out.next_token().filter(|t| !t.is_empty()).map(str::to_string),
            total_rows: out
                .query_statistics()
                .and_then(|s| s.total_results_count())
                .map(|n| n.max(0) as u64),
        })
    }

    async fn cancel_query(&self, store: &Store, query_id: &str) -> Result<(), CallFail> {
        self.client(store.region())
            .cancel_query()
            .query_id(query_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| decide("cloudtrail:CancelQuery", store.name(), &e))
    }
}

// ---------------------------------------------------------------- the inventory

/// Where the event data stores come from.
#[derive(Debug, Clone)]
pub enum Stores {
    /// Asked of the channel with `GetChannel`.
    OfChannel(String),
    /// Given (`EVENT_DATA_STORE`).
    Given(Store),
}

pub struct LakeInventory {
    api: Arc<dyn LakeApi>,
    stores: Stores,
    channel_arn: String,
    concurrency: usize,
    backoff: Backoff,
    found: tokio::sync::OnceCell<Vec<Store>>,
    /// The kinds of entries asked about (one source's), all of one `eventSource`.
    kinds: Vec<EntryKind>,
}

impl LakeInventory {
    pub fn new(api: Arc<dyn LakeApi>, channel_arn: &str, stores: Stores, concurrency: usize, backoff: Backoff) -> LakeInventory {
        LakeInventory {
            api,
            stores,
            channel_arn: channel_arn.to_string(),
            concurrency: concurrency.clamp(1, MAX_CONCURRENT_QUERIES),
            backoff,
            found: tokio::sync::OnceCell::new(),
            kinds: EntryKind::ALL.to_vec(),
        }
    }

    /// Asks about entries of these kinds (Kong's by default): the events of their `eventSource`.
    pub fn of_kinds(mut self, kinds: Vec<EntryKind>) -> LakeInventory {
        if !kinds.is_empty() {
            self.kinds = kinds;
        }
        self
    }

    /// The stores to query, asked of the channel once.
    pub async fn stores(&self) -> Result<Vec<Store>, InventoryError> {
        self.found
            .get_or_try_init(|| async {
                match &self.stores {
                    Stores::Given(store) => Ok(vec![store.clone()]),
                    Stores::OfChannel(channel) => {
                        let locations = self.retrying(|| self.api.channel_stores(channel), None).await?;
                        let stores: Vec<Store> = locations.iter().filter_map(|l| Store::parse(l).ok()).collect();
                        if stores.is_empty() {
                            return Err(InventoryError::Denied(format!(
                                "the channel {channel} delivers to no event data store: set EVENT_DATA_STORE to the store's ARN"
                            )));
                        }
                        Ok(stores)
                    }
                }
            })
            .await
            .cloned()
    }

    /// A call, retried while it may still succeed, within `until`.
    async fn retrying<T, F, Fut>(&self, call: F, until: Option<Instant>) -> Result<T, InventoryError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, CallFail>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            let failure = match call().await {
                Ok(v) => return Ok(v),
                Err(CallFail::Denied(why)) => return Err(InventoryError::Denied(why)),
                Err(CallFail::Unsigned(why)) => return Err(InventoryError::Unsigned(why)),
                Err(CallFail::Invalid(why)) => return Err(InventoryError::Failed(why)),
                Err(CallFail::Busy) => {
                    // Other queries of the account are running: wait as long as it takes, within `until`.
                    tries = tries.min(4);
                    "the account runs the most queries CloudTrail Lake allows".to_string()
                }
                Err(CallFail::Transient(why)) => why,
            };
            let attempts_left = tries < self.backoff.attempts;
            match self.backoff.wait(tries, None, until).filter(|_| attempts_left) {
                Some(wait) => tokio::time::sleep(wait).await,
                None if until.is_some_and(|u| Instant::now() + Duration::from_millis(10) >= u) => {
                    return Err(InventoryError::OutOfTime(format!("out of time asking CloudTrail Lake ({failure})")));
                }
                None => {
                    return Err(InventoryError::Failed(format!(
                        "CloudTrail Lake failed after {tries} tries: {failure}"
                    )));
                }
            }
        }
    }

    /// Runs one query to its last page.
    async fn query(&self, store: &Store, slice: (i64, i64), scope: (i64, i64), until: Option<Instant>) -> Result<Slice, InventoryError> {
        let sql = statement(store, slice, scope, self.kinds[0].event_source());
        let id = self.retrying(|| self.api.start_query(store, &sql), until).await?;
        let cancel = || async {
            let _ = self.api.cancel_query(store, &id).await;
        };
        let mut wait = self.backoff.initial.max(Duration::from_millis(10));
        let bytes_scanned = loop {
            if until.is_some_and(|u| Instant::now() + wait >= u) {
                cancel().await;
                return Err(InventoryError::OutOfTime(format!(
                    "query {id} on {} did not finish in time; cancelled",
                    store.name()
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_POLL_WAIT);
            match self.retrying(|| self.api.describe_query(store, &id), until).await? {
                QueryState::Running => continue,
                QueryState::Finished { bytes_scanned } => break bytes_scanned,
                QueryState::TimedOut => return Ok(Slice::TimedOut),
                QueryState::Failed(why) => {
                    return Err(InventoryError::Failed(format!("query {id} on {} failed: {why}", store.name())));
                }
            }
        };
        let mut holdings = Holdings::new(super::holdings::Scope {
            since: scope.0 + super::inventory::PAD_SECONDS,
            until: scope.1 - super::inventory::PAD_SECONDS,
        });
        let (mut token, mut rows, mut total) = (None::<String>, 0u64, None);
        let mut seen_tokens = std::collections::HashSet::new();
        loop {
            let page = self.retrying(|| self.api.results(store, &id, token.as_deref()), until).await?;
            total = page.total_rows.or(total);
            for row in &page.rows {
                rows += 1;
                match parse_row(row) {
                    Some(held) if self.kinds.contains(&held.kind) => holdings.add(&held),
                    _ => holdings.unreadable += 1,
                }
            }
            match page.next_token {
                Some(next) if !seen_tokens.insert(next.clone()) => {
                    return Err(InventoryError::Failed(format!("query {id}: GetQueryResults repeated a page token")));
                }
                Some(next) => token = Some(next),
                None => break,
            }
        }
        if let Some(total) = total.filter(|t| *t != rows) {
            return Err(InventoryError::Failed(format!(
                "query {id} on {}: Lake counted {total} rows but returned {rows}",
                store.name()
            )));
        }
        Ok(Slice::Done(Box::new((
            holdings,
            QueryRecord {
                id: id.clone(),
                target: store.name().to_string(),
                from: rfc3339(slice.0),
                to: rfc3339(slice.1),
                rows,
                bytes_scanned,
            },
        ))))
    }
}

enum Slice {
    Done(Box<(Holdings, QueryRecord)>),
    TimedOut,
}

#[async_trait]
impl Inventory for LakeInventory {
    async fn holdings(&self, scope: Scope, now: i64, until: Option<Instant>) -> Result<Answer, InventoryError> {
        let stores = self.stores().await?;
        let (from, to) = padded(scope, now);
        let question = (
            scope.since - super::inventory::PAD_SECONDS,
            scope.until + super::inventory::PAD_SECONDS,
        );
        let mut todo: VecDeque<(Store, (i64, i64))> = stores
            .iter()
            .flat_map(|store| {
                slices(from - from.rem_euclid(DAY), to, DAY)
                    .into_iter()
                    .map(move |s| (store.clone(), s))
            })
            .collect();
        let total = todo.len();
        let mut answer = Answer {
            holdings: Holdings::new(scope),
            ..Answer::default()
        };
        let mut running: JoinSet<(Store, (i64, i64), Result<Slice, InventoryError>)> = JoinSet::new();
        let this = Arc::new(self.clone_for_tasks());
        let mut failure: Option<InventoryError> = None;
        loop {
            while failure.is_none() && running.len() < self.concurrency {
                let Some((store, slice)) = todo.pop_front() else { break };
                let this = this.clone();
                running.spawn(async move {
                    let result = this.query(&store, slice, question, until).await;
                    (store, slice, result)
                });
            }
            let Some(joined) = running.join_next().await else { break };
            match joined {
                Ok((_, _, Ok(Slice::Done(done)))) => {
                    let (holdings, record) = *done;
                    answer.bytes_scanned += record.bytes_scanned;
                    tracing::debug!(
                        query = %record.id,
                        from = %record.from,
                        to = %record.to,
                        rows = record.rows,
                        bytes_scanned = record.bytes_scanned,
                        "CloudTrail Lake query {} of {total} done",
                        answer.queries.len() + 1
                    );
                    answer.queries.push(record);
                    answer.holdings.merge(holdings);
                }
                Ok((store, (a, b), Ok(Slice::TimedOut))) if b - a > SMALLEST_SLICE => {
                    let middle = a + (b - a) / 2;
                    tracing::warn!(from = %rfc3339(a), to = %rfc3339(b), "a CloudTrail Lake query timed out: asking for each half");
                    todo.push_front((store.clone(), (middle, b)));
                    todo.push_front((store, (a, middle)));
                }
                Ok((store, (a, b), Ok(Slice::TimedOut))) => {
                    failure.get_or_insert(InventoryError::Failed(format!(
                        "a CloudTrail Lake query of {} timed out even for the hour from {}",
                        store.name(),
                        rfc3339(a)
                    )));
                    let _ = b;
                }
                Ok((_, _, Err(e))) => {
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    failure.get_or_insert(InventoryError::Failed(format!("a CloudTrail Lake query task failed: {e}")));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(answer),
        }
    }

    fn destination(&self) -> serde_json::Value {
        let stores: Vec<String> = self
            .found
            .get()
            .map(|s| s.iter().map(|s| s.name().to_string()).collect())
            .unwrap_or_default();
        serde_json::json!({"type": "cloudtrail_lake", "channel": self.channel_arn, "event_data_stores": stores})
    }

    fn describe(&self) -> String {
        match &self.stores {
            Stores::Given(store) => format!("CloudTrail Lake event data store {}", store.name()),
            Stores::OfChannel(channel) => format!("CloudTrail Lake event data store(s) of channel {channel}"),
        }
    }
}

impl LakeInventory {
    fn clone_for_tasks(&self) -> LakeInventory {
        LakeInventory {
            api: self.api.clone(),
            stores: self.stores.clone(),
            channel_arn: self.channel_arn.clone(),
            concurrency: self.concurrency,
            backoff: self.backoff,
            found: self.found.clone(),
            kinds: self.kinds.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EVENT_SOURCE;

    fn row(pairs: &[(&str, &str)]) -> Vec<HashMap<String, String>> {
        pairs.iter().map(|(k, v)| HashMap::from([(k.to_string(), v.to_string())])).collect()
    }

    #[test]
    fn stores_are_named_by_arn_or_id_and_nothing_else_reaches_the_sql() {
        let arn = "arn:aws:cloudtrail:eu-west-1:123456789012:eventdatastore/0f2d8a7e-1b2c-4d5e-8f90-123456789abc";
        let s = Store::parse(arn).unwrap();
        assert_eq!(
            (s.id.as_str(), s.region()),
            ("0f2d8a7e-1b2c-4d5e-8f90-123456789abc", Some("eu-west-1"))
        );
        assert_eq!(Store::parse("abc-123").unwrap().arn, None);
        assert!(Store::parse("x' OR 1=1 --").is_err());
        assert!(Store::parse("arn:aws:cloudtrail:eu-west-1:1:channel/x").is_err());
    }

    #[test]
    fn the_statement_asks_for_one_day_of_ingestion_filtered_to_the_scope() {
        let store = Store::parse("eds1").unwrap();
        let sql = statement(&store, (1_700_006_400, 1_700_092_800), (1_699_000_000, 1_700_000_000), EVENT_SOURCE);
        assert!(
            sql.contains("FROM eds1 WHERE eventTime >= '2023-11-15 00:00:00' AND eventTime < '2023-11-16 00:00:00'"),
            "{sql}"
        );
        assert!(sql.contains("eventData.eventTime >= '2023-11-03T08:26:40Z' AND eventData.eventTime < '2023-11-14T22:13:20Z'"));
        assert!(sql.contains("eventData.eventSource = 'kong-gateway'"));
        assert!(sql.ends_with("GROUP BY 1, 2, 3, 4"));
        let konnect = statement(
            &store,
            (1_700_006_400, 1_700_092_800),
            (1_699_000_000, 1_700_000_000),
            "konnect.konghq.com",
        );
        assert!(konnect.contains("eventData.eventSource = 'konnect.konghq.com'"), "{konnect}");
    }

    #[test]
    fn rows_read_back_as_held_events() {
        let r = parse_row(&row(&[
            ("uid", "r1"),
            ("kind", "object"),
            ("part", "2"),
            ("parts", "3.0"),
            ("event_time", "2023-11-14T22:13:20Z"),
            ("events", "2"),
        ]))
        .unwrap();
        assert_eq!(
            r,
            HeldEvents {
                kind: EntryKind::Object,
                uid: "r1".into(),
                part: Some(2),
                parts: Some(3),
                event_time: Some(1_700_000_000),
                count: 2
            }
        );
        let whole = parse_row(&row(&[("uid", "r1"), ("kind", "request"), ("events", "1")])).unwrap();
        assert_eq!((whole.part, whole.parts, whole.event_time), (None, None, None));
        assert!(parse_row(&row(&[("uid", "r1"), ("kind", "other")])).is_none());
        let konnect = parse_row(&row(&[("uid", "c2ln"), ("kind", "konnect"), ("events", "1")])).unwrap();
        assert_eq!((konnect.kind, konnect.uid.as_str()), (EntryKind::Konnect, "c2ln"));
        assert!(parse_row(&row(&[("kind", "request")])).is_none());
    }
}
