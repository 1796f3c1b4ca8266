//! The domain endpoints: what the billing app calls to onboard a customer
//! domain (add it, show the customer the three records, check them when
//! the customer presses "check my records", remove it), and the operator
//! zone as a zone-file fragment for the operator's DNS provider.
//!
//! The work is the domain registry's ([`crate::domains`]); these handlers
//! only translate to and from the `...V1` types. Registry calls read and
//! write sled and an add generates two RSA keys, so they run off the async
//! workers.

use super::types::{AddDomainV1, DomainListV1, DomainV1, RecordCheckV1, RotationV1, VerificationV1};
use super::{AdminState, ApiError};
use crate::domains::{AddError, DomainRecord, Domains, DomainsError, RecordCheck};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use std::sync::Arc;

type Shared = State<Arc<AdminState>>;

/// `POST /api/domains`: registers a domain, pending; 201 with its records.
pub(super) async fn add(State(s): Shared, body: Result<Json<AddDomainV1>, JsonRejection>) -> Result<impl IntoResponse, ApiError> {
    let Json(req) = body.map_err(|e| {
        ApiError::new(
            e.status(),
            format!("send a JSON body like {{\"domain\": \"customer.nl\"}}: {}", e.body_text()),
        )
    })?;
    let view = blocking(&s, move |s| {
        let registry = s.domains.registry();
        let record = registry.add(&req.domain, req.selector_prefix.as_deref(), req.return_path_label.as_deref())?;
        s.domains.emit(&record, record.state, vec!["added: waiting for the customer's three CNAME records".into()]);
        view(&s.domains, &record)
    })
    .await?;
    s.domains.events_durable().await;
    tracing::info!(domain = %view.domain, tenant = %view.tenant, "domain added over the admin API");
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /api/domains`: every registered domain, sorted by name.
pub(super) async fn list(State(s): Shared) -> Result<Json<DomainListV1>, ApiError> {
    let domains = blocking(&s, |s| {
        let records = s.domains.registry().list()?;
        records.iter().map(|r| view(&s.domains, r)).collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(Json(DomainListV1 { domains }))
}

/// `GET /api/domains/{domain}`.
pub(super) async fn show(State(s): Shared, Path(domain): Path<String>) -> Result<Json<DomainV1>, ApiError> {
    let view = blocking(&s, move |s| view(&s.domains, &registered(&s.domains, &domain)?)).await?;
    Ok(Json(view))
}

/// `POST /api/domains/{domain}/verify`: checks the three records now,
/// applies the verdict to the domain's state, and says per record what is
/// wrong.
pub(super) async fn verify(State(s): Shared, Path(domain): Path<String>) -> Result<Json<VerificationV1>, ApiError> {
    let (record, verification) = s.domains.verify_now(&domain).await?;
    tracing::info!(domain = %record.domain, state = %record.state, overall = ?verification.overall, "domain checked over the admin API");
    Ok(Json(VerificationV1::new(&record.domain, record.state, &verification)))
}

/// `POST /api/domains/{domain}/rotate`: starts a DKIM key rotation (a new
/// key for the idle selector, published) and checks at once whether it is
/// visible through the customer's CNAME, switching signing when it is.
/// While a rotation waits for its key, checks again. 409 while the old key
/// of the last rotation is still retained.
pub(super) async fn rotate(State(s): Shared, Path(domain): Path<String>) -> Result<Json<RotationV1>, ApiError> {
    let rotated = s.domains.rotate(&domain).await?;
    let record = &rotated.record;
    let check = rotated.check.as_ref().map(|status| {
        let index = record.keys.publishing().unwrap_or(record.keys.active());
        let r = &s.domains.customer_records(record)[1 + index];
        RecordCheckV1::from(&RecordCheck {
            host: r.host.clone(),
            label: r.label.clone(),
            expected: r.value.clone(),
            status: status.clone(),
        })
    });
    let embedded = s.domains.zone_settings().embedded;
    tracing::info!(domain = %record.domain, selector = %record.active_selector(), switched = rotated.switched, "DKIM key rotation over the admin API");
    Ok(Json(RotationV1::new(record, rotated.switched, check, embedded)))
}

/// `POST /api/relay/rotate`: the same for the relay's own key, between
/// `identity.dkim_selector` and the same with `2` appended.
pub(super) async fn rotate_relay(State(s): Shared) -> Result<Json<RotationV1>, ApiError> {
    let rotated = s.domains.rotate_relay().await?;
    let check = rotated.check.as_ref().map(|status| {
        let index = rotated.keys.publishing().unwrap_or(rotated.keys.active());
        let selector = &rotated.selectors[index];
        let host = crate::domains::names::dkim_host(selector, &rotated.domain);
        let message = match status {
            crate::domains::CheckStatus::Ok => format!("Ok: the new key is published at `{host}`."),
            crate::domains::CheckStatus::Temporary { reason } => format!("Temporary DNS failure while looking up `{host}` ({reason})."),
            _ => format!("The new key is not visible at `{host}` yet: publish the records of `herald dns zone`."),
        };
        RecordCheckV1 {
            label: crate::domains::names::dkim_label(selector),
            expected: host.clone(),
            host,
            status: status.into(),
            ok: status.is_ok(),
            message,
        }
    });
    tracing::info!(domain = %rotated.domain, selector = %rotated.selector(), switched = rotated.switched, "relay DKIM key rotation over the admin API");
    Ok(Json(RotationV1::relay(&rotated, check)))
}

/// `DELETE /api/domains/{domain}`: removes the domain and its DKIM keys;
/// the removed domain, with the operator records that can go now.
pub(super) async fn remove(State(s): Shared, Path(domain): Path<String>) -> Result<Json<DomainV1>, ApiError> {
    let view = blocking(&s, move |s| {
        // The operator records need the keys, which go with the domain.
        let before = registered(&s.domains, &domain)?;
        let operator = s.domains.operator_records(&before)?;
        let removed = s
            .domains
            .registry()
            .remove(&before.domain)?
            .ok_or_else(|| DomainsError::NotFound(domain.clone()))?;
        let operator = if removed.tenant == before.tenant { operator } else { Vec::new() };
        Ok(DomainV1::from_record(
            &removed,
            &s.domains.customer_records(&removed),
            &operator,
            false,
        ))
    })
    .await?;
    tracing::info!(domain = %view.domain, tenant = %view.tenant, "domain removed over the admin API");
    Ok(Json(view))
}

/// `GET /api/dns/zone`: the relay's own DKIM key and every tenant's
/// operator records, as an RFC 1035 zone-file fragment (text/plain): what
/// the embedded DNS server serves, for an operator who publishes by hand.
pub(super) async fn zone(State(s): Shared) -> Result<impl IntoResponse, ApiError> {
    let text = blocking(&s, |s| Ok(s.domains.zone_content()?.text())).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}

/// The record of `domain`, or not found.
fn registered(domains: &Domains, domain: &str) -> Result<DomainRecord, DomainsError> {
    domains
        .registry()
        .get(domain)?
        .ok_or_else(|| DomainsError::NotFound(domain.to_string()))
}

/// The API view of `record` with both sets of records.
fn view(domains: &Domains, record: &DomainRecord) -> Result<DomainV1, ApiError> {
    let registry = domains.registry();
    let signs = record.signs_as_customer(registry.now_ms(), registry.timing().grace_ms);
    let operator = domains.operator_records(record)?;
    Ok(DomainV1::from_record(record, &domains.customer_records(record), &operator, signs))
}

/// Runs registry work on the blocking pool.
async fn blocking<T: Send + 'static>(
    s: &Arc<AdminState>,
    f: impl FnOnce(&AdminState) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let s = s.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .unwrap_or_else(|e| Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("domain task failed: {e}"))))
}

impl From<AddError> for ApiError {
    fn from(e: AddError) -> Self {
        let status = match &e {
            AddError::NotADomain { .. }
            | AddError::PublicSuffix { .. }
            | AddError::OperatorZone { .. }
            | AddError::BadSelectorPrefix { .. }
            | AddError::BadReturnPathLabel { .. } => StatusCode::BAD_REQUEST,
            AddError::Duplicate { .. } => StatusCode::CONFLICT,
            AddError::Store(_) | AddError::Keys(_) => {
                tracing::error!(error = %e, "admin API: adding a domain failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self::new(status, e.to_string())
    }
}

impl From<DomainsError> for ApiError {
    fn from(e: DomainsError) -> Self {
        match e {
            DomainsError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, e.to_string()),
            DomainsError::Store(e) => e.into(),
            DomainsError::Keys { .. } | DomainsError::Rotation(_) => {
                tracing::error!(error = %e, "admin API: DKIM keys unreadable");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
            DomainsError::RotationBusy(_) => Self::new(StatusCode::CONFLICT, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_errors_map_to_statuses() {
        let cases = [
            (AddError::PublicSuffix { domain: "co.uk".into() }, StatusCode::BAD_REQUEST),
            (
                AddError::Duplicate {
                    domain: "customer.nl".into(),
                    tenant: 1,
                },
                StatusCode::CONFLICT,
            ),
            (AddError::Keys("no entropy".into()), StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (error, want) in cases {
            let text = error.to_string();
            let api = ApiError::from(error);
            assert_eq!((api.status, api.message), (want, text));
        }
        let api = ApiError::from(DomainsError::NotFound("x.nl".into()));
        assert_eq!(api.status, StatusCode::NOT_FOUND);
    }
}
