//! The REST routes `aws-sdk-mediaconvert` calls (restJson1, API version 2017-08-29) and the
//! error shape its parser reads: the code in `x-amzn-ErrorType`, the text in `message`.
//!
//! | operation | route | success |
//! |---|---|---|
//! | CreateJob | `POST /2017-08-29/jobs` | 201 `{"job": …}` |
//! | ListJobs | `GET /2017-08-29/jobs` | 200 `{"jobs": […], "nextToken": …}` |
//! | GetJob | `GET /2017-08-29/jobs/{id}` | 200 `{"job": …}` |
//! | CancelJob | `DELETE /2017-08-29/jobs/{id}` | 202 `{}` |
//! | DescribeEndpoints | `POST /2017-08-29/endpoints` | 200 `{"endpoints": [{"url": …}]}` |

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tracing::instrument;

use crate::events::JobEvent;
use crate::job::{new_job_id, JobRecord, JobStatus, ListQuery, Outcome, MAX_LIST_RESULTS};
use crate::plan::plan_job;
use crate::request::CreateJobRequest;
use crate::runner::Service;

/// A MediaConvert error response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The error shape name, e.g. `BadRequestException`.
    pub kind: &'static str,
    /// The message.
    pub message: String,
}

impl ApiError {
    /// 400 `BadRequestException`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "BadRequestException",
            message: message.into(),
        }
    }

    /// 404 `NotFoundException`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "NotFoundException",
            message: message.into(),
        }
    }

    /// 409 `ConflictException`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            kind: "ConflictException",
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::info!(kind = self.kind, message = %self.message, "request refused");
        (
            self.status,
            [("x-amzn-ErrorType", self.kind)],
            Json(json!({"message": self.message})),
        )
            .into_response()
    }
}

/// The stand-in's routes.
pub(crate) fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/2017-08-29/jobs", post(create_job).get(list_jobs))
        .route("/2017-08-29/jobs/{id}", get(get_job).delete(cancel_job))
        .route("/2017-08-29/endpoints", post(describe_endpoints))
        .route("/health", get(health))
        .fallback(unknown_operation)
        .layer(axum::middleware::map_response(add_request_id))
        .with_state(service)
}

/// Every AWS response names a request id; the SDK records it.
async fn add_request_id(mut response: Response) -> Response {
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert("x-amzn-RequestId", id);
    }
    response
}

#[instrument(skip_all, fields(job_id))]
async fn create_job(
    State(service): State<Arc<Service>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: CreateJobRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))?;
    if let Some(token) = &request.client_request_token {
        if token.is_empty() || token.len() > 64 || !token.is_ascii() {
            return Err(ApiError::bad_request(
                "/clientRequestToken: Should be 1 to 64 ASCII characters",
            ));
        }
    }
    let id = {
        let mut store = service.store();
        if let Some(token) = &request.client_request_token {
            if let Some(job) = store.by_token(token, Instant::now()) {
                tracing::Span::current().record("job_id", job.id.as_str());
                tracing::info!("idempotent repeat of an earlier CreateJob");
                return Ok((StatusCode::CREATED, Json(json!({"job": job.to_json()}))));
            }
        }
        let plan = plan_job(&request).map_err(|e| ApiError::bad_request(e.0))?;
        let now = OffsetDateTime::now_utc();
        let id = new_job_id(now);
        let queue_arn = match request.queue.as_deref() {
            None | Some("") => service.config.default_queue_arn(),
            Some(arn) if arn.starts_with("arn:") => arn.to_string(),
            Some(name) => service.config.queue_arn(name),
        };
        let record = JobRecord {
            arn: service.config.job_arn(&id),
            id: id.clone(),
            created_at: now,
            role: request.role.clone().unwrap_or_default(),
            settings: request.settings.clone().unwrap_or_default(),
            user_metadata: request.user_metadata.clone().unwrap_or_default(),
            queue_arn,
            client_request_token: request.client_request_token.clone(),
            status_update_interval: request
                .status_update_interval
                .clone()
                .unwrap_or_else(|| "SECONDS_60".into()),
            priority: request.priority.unwrap_or(0),
            status: JobStatus::Submitted,
            started_at: None,
            finished_at: None,
            failure: None,
            results: None,
            plan: Arc::new(plan),
            progress: Arc::default(),
            cancel: service.shutdown.child_token(),
        };
        store.insert(record, Instant::now());
        id
    };
    tracing::Span::current().record("job_id", id.as_str());
    tracing::info!("job submitted");
    service.spawn_job(id.clone());
    let job = service
        .store()
        .get(&id)
        .map(JobRecord::to_json)
        .unwrap_or_default();
    Ok((StatusCode::CREATED, Json(json!({"job": job}))))
}

#[instrument(skip(service))]
async fn get_job(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = service.store();
    let job = store.get(&id).ok_or_else(|| job_not_found(&id))?;
    Ok(Json(json!({"job": job.to_json()})))
}

#[instrument(skip(service))]
async fn list_jobs(
    State(service): State<Arc<Service>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let query = list_query(&params, &service)?;
    let (jobs, next_token) = service.store().list(&query);
    let mut body = json!({"jobs": jobs});
    if let Some(token) = next_token {
        body["nextToken"] = json!(token);
    }
    Ok(Json(body))
}

fn list_query(params: &HashMap<String, String>, service: &Service) -> Result<ListQuery, ApiError> {
    let max_results = match params.get("maxResults") {
        None => MAX_LIST_RESULTS,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIST_RESULTS).contains(n))
            .ok_or_else(|| ApiError::bad_request("/maxResults: Should be between 1 and 20"))?,
    };
    let offset = match params.get("nextToken") {
        None => 0,
        Some(token) => token
            .parse()
            .map_err(|_| ApiError::bad_request(format!("Invalid nextToken `{token}`")))?,
    };
    let ascending = match params.get("order").map(String::as_str) {
        None | Some("DESCENDING") => false,
        Some("ASCENDING") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "/order: `{other}` should be ASCENDING or DESCENDING"
            )))
        }
    };
    let status = match params.get("status") {
        None => None,
        Some(text) => Some(JobStatus::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "/status: `{text}` should be one of SUBMITTED, PROGRESSING, COMPLETE, CANCELED, ERROR"
            ))
        })?),
    };
    let queue_arn = params.get("queue").map(|queue| {
        if queue.starts_with("arn:") {
            queue.clone()
        } else {
            service.config.queue_arn(queue)
        }
    });
    Ok(ListQuery {
        max_results,
        offset,
        ascending,
        status,
        queue_arn,
    })
}

#[instrument(skip(service))]
async fn cancel_job(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (job, cancel) = {
        let mut store = service.store();
        let record = store.get(&id).ok_or_else(|| job_not_found(&id))?;
        if record.status.is_terminal() {
            return Err(ApiError::conflict(format!(
                "The job {id} cannot be canceled because its status is {}",
                record.status.as_str()
            )));
        }
        let job = service.context(record);
        let cancel = record.cancel.clone();
        store.finish(&id, Outcome::Canceled, OffsetDateTime::now_utc());
        (job, cancel)
    };
    cancel.cancel();
    tracing::info!("job canceled");
    let events = Arc::clone(&service);
    service.tracker.spawn(async move {
        events.publish(&job, &JobEvent::Canceled).await;
    });
    Ok((StatusCode::ACCEPTED, Json(json!({}))))
}

/// The legacy account endpoint lookup: the stand-in is its own endpoint, reached through
/// whatever host the caller used.
async fn describe_endpoints(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
) -> Json<Value> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(String::from)
        .unwrap_or_else(|| service.config.listen.clone());
    Json(json!({"endpoints": [{"url": format!("http://{host}")}]}))
}

async fn health() -> &'static str {
    "ok"
}

async fn unknown_operation(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "The MediaConvert stand-in does not implement {method} {}",
        uri.path()
    ))
}

fn job_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("The job {id} was not found"))
}
