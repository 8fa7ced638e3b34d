//! A fault-injecting HTTP/1.1 reverse proxy in front of moto_server, so the e2e suite can make
//! the local stack fail the way AWS does: throttling, 5xx, transaction conflicts, lost
//! connections, slow answers, and the SendMessageBatch size limit moto does not enforce.
//!
//! Each fault is sent in the wire shape the real service uses, so the SDK classifies it as it
//! would on AWS (retried by the SDK, surfaced to our code, or both). The proxy picks the
//! service from the SigV4 credential scope (`Credential=…/<region>/<service>/aws4_request`) and
//! the operation from `X-Amz-Target` (DynamoDB and SQS speak JSON) or, for S3, from the method
//! and path. Decisions come from a seeded generator, so a plan injects the same sequence of
//! faults for the same sequence of calls.
//!
//! Requests are forwarded with their headers unchanged (Host included: SigV4 signs it) and S3
//! bodies stream through in both directions; only DynamoDB and SQS bodies, which are small, are
//! read whole, to look inside them.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The most one SendMessageBatch may carry, summed over its message bodies: "The maximum
/// allowed individual message size and the maximum total payload size (the sum of the
/// individual lengths of all of the batched messages) are both 256 KiB" ("SendMessageBatch",
/// Amazon SQS API Reference,
/// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html>).
/// AWS has allowed 1 MiB since 2025, and so does moto; the proxy holds the stack to the older
/// limit that other emulators and the services' own planning use.
pub const SQS_MAX_BATCH_PAYLOAD_BYTES: usize = 256 * 1024;

/// An AWS service, as named in the SigV4 credential scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// Amazon S3 (`s3`).
    S3,
    /// Amazon SQS (`sqs`).
    Sqs,
    /// Amazon DynamoDB (`dynamodb`).
    DynamoDb,
    /// Anything else (not signed, or another service): never matched by a service rule.
    Other,
}

impl Service {
    fn from_authorization(value: &str) -> Self {
        // `AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/dynamodb/aws4_request, …`
        let scope = value
            .split("Credential=")
            .nth(1)
            .and_then(|rest| rest.split([',', ' ']).next())
            .unwrap_or_default();
        let mut parts = scope.rsplit('/');
        let _terminator = parts.next();
        match parts.next() {
            Some("s3") => Self::S3,
            Some("sqs") => Self::Sqs,
            Some("dynamodb") => Self::DynamoDb,
            _ => Self::Other,
        }
    }
}

/// A fault the proxy can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// S3 `500 InternalError` (XML), which the SDK retries.
    S3InternalError,
    /// S3 `503 SlowDown` (XML), throttling the SDK retries with backoff.
    S3SlowDown,
    /// S3 `400 RequestTimeout` (XML), a transient error the SDK retries.
    S3RequestTimeout,
    /// DynamoDB `400 ThrottlingException` (JSON `__type`).
    DynamoDbThrottling,
    /// DynamoDB `400 ProvisionedThroughputExceededException` (JSON `__type`).
    DynamoDbProvisionedThroughputExceeded,
    /// DynamoDB `400 TransactionCanceledException` whose `CancellationReasons` say
    /// `TransactionConflict` for every item of the request (not retried by the SDK).
    DynamoDbTransactionCanceledConflict,
    /// DynamoDB `400 TransactionConflictException`: a single-item write met a running
    /// transaction (not retried by the SDK).
    DynamoDbTransactionConflict,
    /// SQS `400 BatchRequestTooLong` (JSON, query-compatible code header).
    SqsBatchRequestTooLong,
    /// The connection closes before the request reaches moto: nothing happened.
    ResetBeforeForwarding,
    /// The connection closes after moto answered: the call took effect, its answer is lost.
    ResetAfterForwarding,
    /// Like [`Fault::ResetAfterForwarding`], but only when moto answered 2xx (a conditional
    /// write that applied); other answers pass through and are not counted.
    ResetAfterSuccess,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// When a rule fires, among the calls it matches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// Each matching call with this probability (0..=1), from the plan's seeded generator.
    Probability(f64),
    /// The first `n` matching calls.
    FirstCalls(u64),
    /// Exactly the `n`-th matching call (counting from 1), e.g. to cut one fan-out short at a
    /// known call.
    NthCall(u64),
    /// Every `n`-th matching call: a steady rate whose count does not depend on chance or on
    /// the order concurrent calls arrive in.
    EveryNth(u64),
    /// The first attempt of every distinct call, so its retry goes through: one failure per
    /// DynamoDB item key (`pk`/`sk` of the first item: the batch marker of a counting
    /// transaction), per S3 method and path, per SQS request body.
    OncePerCall,
}

/// One line of a plan: which calls, when, and what goes wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// The service the rule applies to.
    pub service: Service,
    /// The operation (`TransactWriteItems`, `SendMessageBatch`, `GetObject`, …), or every one.
    pub operation: Option<String>,
    /// When it fires.
    pub trigger: Trigger,
    /// What the caller gets.
    pub fault: Fault,
    /// Only calls whose request body contains this text (DynamoDB and SQS bodies), e.g. one
    /// condition expression.
    pub body_contains: Option<String>,
}

impl FaultRule {
    /// A rule for every operation of `service`.
    pub fn new(service: Service, trigger: Trigger, fault: Fault) -> Self {
        Self {
            service,
            operation: None,
            trigger,
            fault,
            body_contains: None,
        }
    }

    /// The same rule narrowed to calls whose body contains `text`.
    pub fn body_contains(mut self, text: &str) -> Self {
        self.body_contains = Some(text.to_string());
        self
    }

    /// The same rule narrowed to one operation.
    pub fn on(mut self, operation: &str) -> Self {
        self.operation = Some(operation.to_string());
        self
    }
}

/// Added latency: every call waits `fixed`, and with `tail_probability` also `tail`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Latency {
    /// Added to every call.
    pub fixed: Duration,
    /// Added to the unlucky calls.
    pub tail: Duration,
    /// How many calls are unlucky (0..=1).
    pub tail_probability: f64,
}

/// Holds the calls it is set on (before they reach moto) until [`Gate::open`], so a test can act
/// while a call is known to be in flight, e.g. signal a worker while one of its batches waits
/// to be counted, instead of hoping a sleep lands at the right moment.
#[derive(Debug, Clone)]
pub struct Gate {
    open: Arc<tokio::sync::watch::Sender<bool>>,
    reached: Arc<AtomicU64>,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self {
            open: Arc::new(tokio::sync::watch::Sender::new(false)),
            reached: Arc::default(),
        }
    }

    /// Calls that reached the gate so far: held now, or let through once it opened.
    pub fn reached(&self) -> u64 {
        self.reached.load(Ordering::SeqCst)
    }

    /// Lets the held calls and every later one through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    async fn pass(&self) {
        self.reached.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.subscribe();
        // The sender lives as long as this gate, so this only returns once it is open.
        let _ = open.wait_for(|open| *open).await;
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.open, &other.open)
    }
}

/// What the proxy does: rules tried in order (the first that fires wins), optional latency, and
/// the seed that makes the decisions repeatable.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultPlan {
    /// Seed of the decision generator.
    pub seed: u64,
    /// Rules, first match wins.
    pub rules: Vec<FaultRule>,
    /// Latency added before forwarding.
    pub latency: Option<Latency>,
    /// Latency for one operation of one service instead of [`FaultPlan::latency`], first
    /// match wins: AWS answers a GetObject sooner than a PutObject.
    pub operation_latency: Vec<(Service, String, Latency)>,
    /// Gates that hold every call of one operation of one service until they open.
    pub gates: Vec<(Service, String, Gate)>,
    /// Answer SQS SendMessageBatch calls here, as SQS answers a call it accepted whole, instead
    /// of forwarding them, except every `n`-th, which goes on to moto: see [`FaultPlan::sqs_sink`].
    pub sqs_sink_forward_every: Option<u64>,
}

impl FaultPlan {
    /// A plan that injects nothing: the proxy only holds the stack to AWS's limits.
    pub fn strict() -> Self {
        Self::default()
    }

    /// An empty plan with `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }

    /// Adds a rule after the existing ones.
    pub fn rule(mut self, rule: FaultRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Sets the added latency.
    pub fn latency(mut self, latency: Latency) -> Self {
        self.latency = Some(latency);
        self
    }

    /// Sets the added latency of `operation` on `service` (e.g. `GetObject` on S3), in place of
    /// the plan's latency for those calls.
    pub fn latency_on(mut self, service: Service, operation: &str, latency: Latency) -> Self {
        self.operation_latency
            .push((service, operation.to_string(), latency));
        self
    }

    /// Holds every call of `operation` on `service` at `gate` (after any latency) until the
    /// test opens it.
    pub fn hold_on(mut self, service: Service, operation: &str, gate: &Gate) -> Self {
        self.gates
            .push((service, operation.to_string(), gate.clone()));
        self
    }

    /// Accepts SendMessageBatch calls in the proxy, forwarding only every `forward_every`-th
    /// to moto. The caller's SDK client still builds, signs, sends and parses every call as
    /// against SQS; only the queue that would keep the messages is left out. For sends of more
    /// messages than moto can hold in reasonable time (its queues slow down as they grow: about
    /// 5 calls of 10 messages a second at 500 messages, 1 a second at 1,500 on this machine), so
    /// a fan-out of millions of frames runs through the real client. Entries count in
    /// [`FaultProxy::sqs_entries`] either way.
    pub fn sqs_sink(mut self, forward_every: u64) -> Self {
        self.sqs_sink_forward_every = Some(forward_every.max(1));
        self
    }

    /// The latency a call of `operation` on `service` gets, if any.
    pub fn latency_for(&self, service: Service, operation: &str) -> Option<Latency> {
        self.operation_latency
            .iter()
            .find(|(s, op, _)| *s == service && op == operation)
            .map(|(_, _, latency)| *latency)
            .or(self.latency)
    }
}

/// One kind of injected fault, for counting.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Injection {
    /// The service called.
    pub service: Service,
    /// The operation called.
    pub operation: String,
    /// What it got.
    pub fault: Fault,
}

/// The proxy could not start.
#[derive(Debug, thiserror::Error)]
#[error("fault proxy: cannot listen on loopback: {0}")]
pub struct FaultProxyError(#[from] std::io::Error);

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A request the proxy dropped on purpose (a connection reset fault).
#[derive(Debug, thiserror::Error)]
#[error("connection reset by the fault plan ({0})")]
struct Dropped(Fault);

/// The running proxy; it stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    upstream: String,
    plan: FaultPlan,
    decisions: Mutex<Decisions>,
    injected: Mutex<BTreeMap<Injection, u64>>,
    log: Mutex<CallLog>,
    client: Client<HttpConnector, ProxyBody>,
}

/// Every call that reached the proxy, by service and operation, and the SendMessageBatch
/// entries among them: what a test counts to show how much work an action did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallLog {
    /// Calls by service and operation (faulted ones included).
    pub calls: BTreeMap<(Service, String), u64>,
    /// Entries of the SendMessageBatch calls, summed.
    pub sqs_entries: u64,
    /// SendMessageBatch calls answered by the sink ([`FaultPlan::sqs_sink`]).
    pub sunk_calls: u64,
}

impl CallLog {
    /// Calls of `operation` on `service`.
    pub fn count(&self, service: Service, operation: &str) -> u64 {
        self.calls
            .get(&(service, operation.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Calls on `service`, every operation.
    pub fn on(&self, service: Service) -> u64 {
        self.calls
            .iter()
            .filter(|((s, _), _)| *s == service)
            .map(|(_, n)| n)
            .sum()
    }
}

#[derive(Debug)]
struct Decisions {
    rng: SplitMix64,
    rules: Vec<RuleState>,
}

#[derive(Debug, Default)]
struct RuleState {
    matched: u64,
    seen: HashSet<String>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, plan: FaultPlan) -> Result<Self, FaultProxyError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .http1_preserve_header_case(true)
            .build(connector);
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            decisions: Mutex::new(Decisions {
                rng: SplitMix64(plan.seed),
                rules: plan.rules.iter().map(|_| RuleState::default()).collect(),
            }),
            plan,
            injected: Mutex::new(BTreeMap::new()),
            log: Mutex::new(CallLog::default()),
            client,
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { state.handle(request).await }
                    });
                    // An error here is a reset we injected, or a client that went away.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .preserve_header_case(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// The endpoint to give the SDK instead of moto's.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every fault injected so far, by service, operation and kind.
    pub fn injected(&self) -> BTreeMap<Injection, u64> {
        lock(&self.state.injected).clone()
    }

    /// The calls seen since the start or the last [`FaultProxy::clear_log`].
    pub fn log(&self) -> CallLog {
        lock(&self.state.log).clone()
    }

    /// Starts the call log afresh.
    pub fn clear_log(&self) {
        *lock(&self.state.log) = CallLog::default();
    }

    /// How many times `fault` was injected, on any call.
    pub fn count(&self, fault: Fault) -> u64 {
        lock(&self.state.injected)
            .iter()
            .filter(|(k, _)| k.fault == fault)
            .map(|(_, n)| n)
            .sum()
    }

    /// How many times `fault` was injected on `service`.
    pub fn count_on(&self, service: Service, fault: Fault) -> u64 {
        lock(&self.state.injected)
            .iter()
            .filter(|(k, _)| k.fault == fault && k.service == service)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the proxy learnt about a request before deciding.
struct Call {
    service: Service,
    operation: String,
    /// The whole body, for DynamoDB and SQS; S3 bodies stay streaming.
    body: Option<Bytes>,
    identity: String,
}

impl State {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<ProxyBody>, Dropped> {
        let (parts, body) = request.into_parts();
        let service = parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map_or(Service::Other, Service::from_authorization);
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.rsplit('.').next())
            .map(str::to_string);
        let (body, buffered) = match service {
            Service::DynamoDb | Service::Sqs => match body.collect().await {
                Ok(collected) => {
                    let bytes = collected.to_bytes();
                    (full(bytes.clone()), Some(bytes))
                }
                Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "unreadable body")),
            },
            _ => (body.boxed(), None),
        };
        let operation = match (&target, service) {
            (Some(target), _) => target.clone(),
            (None, Service::S3) => s3_operation(&parts.method, &parts.uri, &parts.headers),
            (None, _) => "Unknown".into(),
        };
        let call = Call {
            identity: identity(service, &operation, &parts, buffered.as_deref()),
            service,
            operation,
            body: buffered,
        };
        let sink = self.log_call(&call);
        let (fault, delay) = self.decide(&call);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let gate = self
            .plan
            .gates
            .iter()
            .find(|(s, op, _)| *s == call.service && *op == call.operation);
        if let Some((_, _, gate)) = gate {
            gate.pass().await;
        }
        let request = Request::from_parts(parts, body);
        let Some(fault) = fault else {
            if sink {
                drain(request).await;
                return Ok(sink_response(call.body.as_deref()));
            }
            return Ok(self.forward(request).await);
        };
        if fault == Fault::ResetAfterSuccess {
            let response = self.forward(request).await;
            if !response.status().is_success() {
                return Ok(response);
            }
            self.record(&call, fault);
            let _ = response.into_body().collect().await;
            return Err(Dropped(fault));
        }
        self.record(&call, fault);
        match fault {
            Fault::ResetBeforeForwarding => {
                drain(request).await;
                Err(Dropped(fault))
            }
            Fault::ResetAfterForwarding | Fault::ResetAfterSuccess => {
                let response = self.forward(request).await;
                // Read moto's answer whole, so the call has surely taken effect, then lose it.
                let _ = response.into_body().collect().await;
                Err(Dropped(fault))
            }
            _ => {
                drain(request).await;
                Ok(error_response(fault, call.body.as_deref()))
            }
        }
    }

    /// The fault for `call` (rules first, then the SQS size limit) and the latency to add.
    fn decide(&self, call: &Call) -> (Option<Fault>, Duration) {
        let mut decisions = lock(&self.decisions);
        let Decisions { rng, rules } = &mut *decisions;
        let delay = self.plan.latency_for(call.service, &call.operation).map_or(
            Duration::ZERO,
            |latency| {
                let tail = rng.chance(latency.tail_probability);
                latency.fixed + if tail { latency.tail } else { Duration::ZERO }
            },
        );
        if call.service == Service::Sqs
            && call.operation == "SendMessageBatch"
            && call
                .body
                .as_deref()
                .is_some_and(|b| batch_payload(b) > SQS_MAX_BATCH_PAYLOAD_BYTES)
        {
            return (Some(Fault::SqsBatchRequestTooLong), delay);
        }
        for (rule, state) in self.plan.rules.iter().zip(rules.iter_mut()) {
            let matches = rule.service == call.service
                && rule
                    .operation
                    .as_deref()
                    .is_none_or(|op| op == call.operation)
                && rule.body_contains.as_deref().is_none_or(|text| {
                    call.body.as_deref().is_some_and(|body| {
                        body.windows(text.len().max(1))
                            .any(|window| window == text.as_bytes())
                    })
                });
            if !matches {
                continue;
            }
            state.matched += 1;
            let fires = match rule.trigger {
                Trigger::Probability(p) => rng.chance(p),
                Trigger::FirstCalls(n) => state.matched <= n,
                Trigger::EveryNth(n) => n > 0 && state.matched % n == 0,
                Trigger::NthCall(n) => state.matched == n,
                Trigger::OncePerCall => state.seen.insert(call.identity.clone()),
            };
            if fires {
                return (Some(rule.fault), delay);
            }
        }
        (None, delay)
    }

    /// Logs `call`; true when the sink answers it.
    fn log_call(&self, call: &Call) -> bool {
        let mut log = lock(&self.log);
        let calls = log
            .calls
            .entry((call.service, call.operation.clone()))
            .or_default();
        *calls += 1;
        let number = *calls;
        if call.service != Service::Sqs || call.operation != "SendMessageBatch" {
            return false;
        }
        log.sqs_entries += call.body.as_deref().map_or(0, batch_entries) as u64;
        let sink = self
            .plan
            .sqs_sink_forward_every
            .is_some_and(|every| !number.is_multiple_of(every));
        log.sunk_calls += u64::from(sink);
        sink
    }

    fn record(&self, call: &Call, fault: Fault) {
        tracing::debug!(service = ?call.service, operation = call.operation, %fault, "fault injected");
        *lock(&self.injected)
            .entry(Injection {
                service: call.service,
                operation: call.operation.clone(),
                fault,
            })
            .or_default() += 1;
    }

    /// Sends the request on to moto, headers untouched, and streams the answer back.
    async fn forward(&self, request: Request<ProxyBody>) -> Response<ProxyBody> {
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        parts.uri = match format!("{}{path}", self.upstream).parse() {
            Ok(uri) => uri,
            Err(_) => return plain(StatusCode::BAD_REQUEST, "bad request target"),
        };
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => response.map(BodyExt::boxed),
            Err(error) => plain(
                StatusCode::BAD_GATEWAY,
                &format!("fault proxy: upstream failed: {error}"),
            ),
        }
    }
}

/// Reads and drops a request body, so the client can read our answer on a clean connection.
async fn drain(request: Request<ProxyBody>) {
    let _ = request.into_body().collect().await;
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response
}

/// The S3 operation a path-style request names, enough to target rules: the object
/// operations by method, the bucket ones by their sub-resource.
fn s3_operation(method: &hyper::Method, uri: &hyper::Uri, headers: &hyper::HeaderMap) -> String {
    let path = uri.path().trim_start_matches('/');
    let has_key = path.split_once('/').is_some_and(|(_, key)| !key.is_empty());
    let query = uri.query().unwrap_or_default();
    let has = |name: &str| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(name))
    };
    let name = match (method.as_str(), has_key) {
        ("GET", true) => "GetObject",
        ("HEAD", true) => "HeadObject",
        ("PUT", true) if headers.contains_key("x-amz-copy-source") => "CopyObject",
        ("PUT", true) => "PutObject",
        ("DELETE", true) => "DeleteObject",
        ("GET", false) if has("list-type") => "ListObjectsV2",
        ("GET", false) if has("notification") => "GetBucketNotificationConfiguration",
        ("GET", false) => "ListObjects",
        ("PUT", false) if has("notification") => "PutBucketNotificationConfiguration",
        ("PUT", false) => "CreateBucket",
        ("POST", false) if has("delete") => "DeleteObjects",
        ("HEAD", false) => "HeadBucket",
        _ => "Other",
    };
    name.to_string()
}

/// What makes two requests "the same call" for [`Trigger::OncePerCall`]: what an SDK retry
/// repeats and a different call does not.
fn identity(
    service: Service,
    operation: &str,
    parts: &hyper::http::request::Parts,
    body: Option<&[u8]>,
) -> String {
    match service {
        Service::DynamoDb => {
            let json: serde_json::Value = body
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            // The first item of a transaction (the marker Put of a counting transaction), or
            // the item of a single-item call; timestamps in the item change between attempts,
            // its key does not.
            let first = json
                .get("TransactItems")
                .and_then(|items| items.get(0))
                .and_then(|item| item.as_object())
                .and_then(|item| item.values().next())
                .unwrap_or(&json);
            let table = first.get("TableName").cloned().unwrap_or_default();
            let item = first
                .get("Key")
                .or_else(|| first.get("Item"))
                .cloned()
                .unwrap_or_default();
            format!(
                "{operation} {table} {} {}",
                item.get("pk").cloned().unwrap_or_default(),
                item.get("sk").cloned().unwrap_or_default()
            )
        }
        Service::S3 => format!("{operation} {} {}", parts.method, parts.uri.path()),
        _ => format!(
            "{operation} {}",
            String::from_utf8_lossy(body.unwrap_or_default())
        ),
    }
}

/// The sum of the message body lengths in a SendMessageBatch JSON request, in bytes.
fn batch_payload(body: &[u8]) -> usize {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return 0;
    };
    json.get("Entries")
        .and_then(|e| e.as_array())
        .map_or(0, |entries| {
            entries
                .iter()
                .filter_map(|e| e.get("MessageBody").and_then(|b| b.as_str()))
                .map(str::len)
                .sum()
        })
}

/// The number of entries in a SendMessageBatch JSON request.
fn batch_entries(body: &[u8]) -> usize {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| json.get("Entries").and_then(|e| e.as_array()).map(Vec::len))
        .unwrap_or(0)
}

/// What SQS answers a SendMessageBatch it accepted whole (JSON protocol): every entry in
/// `Successful` with a message id and the MD5 of its body ("SendMessageBatch", Amazon SQS API
/// Reference,
/// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html>).
fn sink_response(body: Option<&[u8]>) -> Response<ProxyBody> {
    use md5::{Digest, Md5};
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let json: serde_json::Value = body
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_default();
    let successful: Vec<serde_json::Value> = json
        .get("Entries")
        .and_then(|e| e.as_array())
        .map(|entries| {
            entries
                .iter()
                .map(|entry| {
                    let text = entry
                        .get("MessageBody")
                        .and_then(|b| b.as_str())
                        .unwrap_or_default();
                    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                    serde_json::json!({
                        "Id": entry.get("Id").cloned().unwrap_or_default(),
                        "MessageId": format!("00000000-0000-4000-8000-{id:012x}"),
                        "MD5OfMessageBody": hex::encode(Md5::digest(text.as_bytes())),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let text = serde_json::json!({ "Successful": successful, "Failed": [] }).to_string();
    let mut response = Response::new(full(Bytes::from(text)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    response.headers_mut().insert(
        "x-amzn-requestid",
        hyper::header::HeaderValue::from_static("FAULTPROXY"),
    );
    response
}

/// The number of items in a TransactWriteItems JSON request (at least one).
fn transaction_items(body: Option<&[u8]>) -> usize {
    body.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|json| {
            json.get("TransactItems")
                .and_then(|i| i.as_array())
                .map(Vec::len)
        })
        .unwrap_or(1)
        .max(1)
}

const DYNAMODB_TYPE_PREFIX: &str = "com.amazonaws.dynamodb.v20120810#";

/// The response the real service sends for `fault`.
///
/// - S3: "Error responses", Amazon S3 API Reference,
///   <https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html> (XML `Error` with
///   `Code`, `Message`, `RequestId`; 500 InternalError, 503 SlowDown, 400 RequestTimeout).
/// - DynamoDB: "Error handling with DynamoDB", Amazon DynamoDB Developer Guide,
///   <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html>
///   (400 with a JSON `__type` and `message`), and "TransactWriteItems", Amazon DynamoDB API
///   Reference,
///   <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html>
///   (`CancellationReasons`, one per item, in request order).
/// - SQS (JSON protocol): "Amazon SQS JSON API responses", Amazon SQS Developer Guide,
///   <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-responses.html>
///   (`__type` and `message`, plus the query-compatible code in `x-amzn-query-error`).
fn error_response(fault: Fault, body: Option<&[u8]>) -> Response<ProxyBody> {
    let s3 = |status: u16, code: &str, message: &str| {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>FAULTPROXY</RequestId><HostId>faultproxy</HostId></Error>"
        );
        (status, "application/xml", xml, None)
    };
    let dynamodb = |code: &str, extra: serde_json::Value| {
        let mut json = serde_json::json!({
            "__type": format!("{DYNAMODB_TYPE_PREFIX}{code}"),
        });
        if let (Some(object), Some(extra)) = (json.as_object_mut(), extra.as_object()) {
            object.extend(extra.clone());
        }
        (400, "application/x-amz-json-1.0", json.to_string(), None)
    };
    let (status, content_type, text, query_error) = match fault {
        Fault::S3InternalError => s3(
            500,
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        Fault::S3SlowDown => s3(503, "SlowDown", "Please reduce your request rate."),
        Fault::S3RequestTimeout => s3(
            400,
            "RequestTimeout",
            "Your socket connection to the server was not read from or written to within the timeout period.",
        ),
        Fault::DynamoDbThrottling => dynamodb(
            "ThrottlingException",
            serde_json::json!({"message": "Rate of requests exceeds the allowed throughput."}),
        ),
        Fault::DynamoDbProvisionedThroughputExceeded => dynamodb(
            "ProvisionedThroughputExceededException",
            serde_json::json!({"message": "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API."}),
        ),
        Fault::DynamoDbTransactionCanceledConflict => {
            let items = transaction_items(body);
            let reasons: Vec<serde_json::Value> = (0..items)
                .map(|_| serde_json::json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}))
                .collect();
            let codes = vec!["TransactionConflict"; items].join(", ");
            dynamodb(
                "TransactionCanceledException",
                serde_json::json!({
                    "Message": format!("Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]"),
                    "CancellationReasons": reasons,
                }),
            )
        }
        Fault::DynamoDbTransactionConflict => dynamodb(
            "TransactionConflictException",
            serde_json::json!({"message": "Transaction is ongoing for the item"}),
        ),
        Fault::SqsBatchRequestTooLong => {
            let length = body.map_or(0, batch_payload);
            let json = serde_json::json!({
                "__type": "com.amazonaws.sqs#BatchRequestTooLong",
                "message": format!("Batch requests cannot be longer than {SQS_MAX_BATCH_PAYLOAD_BYTES} bytes. You have sent {length} bytes."),
            });
            (
                400,
                "application/x-amz-json-1.0",
                json.to_string(),
                Some("AWS.SimpleQueueService.BatchRequestTooLong;Sender"),
            )
        }
        Fault::ResetBeforeForwarding | Fault::ResetAfterForwarding | Fault::ResetAfterSuccess => {
            (500, "text/plain", String::new(), None)
        }
    };
    let mut response = Response::new(full(Bytes::from(text)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        "x-amzn-requestid",
        hyper::header::HeaderValue::from_static("FAULTPROXY"),
    );
    if let Some(query_error) = query_error {
        headers.insert(
            "x-amzn-query-error",
            hyper::header::HeaderValue::from_static(query_error),
        );
    }
    response
}

/// SplitMix64: a tiny seeded generator, enough for repeatable fault decisions.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_comes_from_the_credential_scope() {
        let auth = |service: &str| {
            format!("AWS4-HMAC-SHA256 Credential=test/20261130/us-east-1/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc")
        };
        assert_eq!(Service::from_authorization(&auth("s3")), Service::S3);
        assert_eq!(Service::from_authorization(&auth("sqs")), Service::Sqs);
        assert_eq!(
            Service::from_authorization(&auth("dynamodb")),
            Service::DynamoDb
        );
        assert_eq!(
            Service::from_authorization(&auth("mediaconvert")),
            Service::Other
        );
        assert_eq!(Service::from_authorization("Bearer x"), Service::Other);
    }

    #[test]
    fn s3_operations_from_method_and_path() {
        let op = |method: &str, uri: &str| {
            s3_operation(
                &method.parse().unwrap(),
                &uri.parse().unwrap(),
                &hyper::HeaderMap::new(),
            )
        };
        assert_eq!(op("GET", "/b/dir/k.jpg?x-id=GetObject"), "GetObject");
        assert_eq!(op("PUT", "/b/k.jpg?x-id=PutObject"), "PutObject");
        assert_eq!(op("GET", "/b?list-type=2&prefix=v%2F"), "ListObjectsV2");
        assert_eq!(op("PUT", "/b"), "CreateBucket");
        assert_eq!(op("HEAD", "/b/k"), "HeadObject");
    }

    #[test]
    fn batch_payload_sums_message_bodies() {
        let body = serde_json::json!({"QueueUrl": "q", "Entries": [
            {"Id": "a", "MessageBody": "x".repeat(10)},
            {"Id": "b", "MessageBody": "ü".repeat(5)},
        ]});
        assert_eq!(batch_payload(body.to_string().as_bytes()), 20);
        assert_eq!(batch_payload(b"not json"), 0);
    }

    #[test]
    fn operation_latency_overrides_the_plan_latency() {
        let ms = Duration::from_millis;
        let all = Latency {
            fixed: ms(1),
            ..Latency::default()
        };
        let get = Latency {
            fixed: ms(20),
            tail: ms(100),
            tail_probability: 0.05,
        };
        let plan = FaultPlan::seeded(1)
            .latency(all)
            .latency_on(Service::S3, "GetObject", get);
        assert_eq!(plan.latency_for(Service::S3, "GetObject"), Some(get));
        assert_eq!(plan.latency_for(Service::S3, "PutObject"), Some(all));
        assert_eq!(plan.latency_for(Service::Sqs, "GetObject"), Some(all));
        assert_eq!(
            FaultPlan::strict().latency_for(Service::S3, "GetObject"),
            None
        );
    }

    #[test]
    fn seeded_decisions_repeat() {
        let draw = |seed| {
            let mut rng = SplitMix64(seed);
            (0..64).map(|_| rng.chance(0.3)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert!(!SplitMix64(1).chance(0.0));
    }
}
