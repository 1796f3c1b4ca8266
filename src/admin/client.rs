//! A blocking client for the admin API, used by `herald queue`, `herald
//! domain` and `herald dns`. It speaks
//! the same [`super::types`] the server answers with, and keeps each
//! answer's JSON text too, for `--json` output.

use super::types::{RotationV1,
    AddDomainV1, DomainListV1, DomainV1, ErrorV1, HealthV1, IdentityV1, InspectRequestV1, InspectV1, MessageSearchV1, MessageV1, QueueListV1, QueueSummaryV1,
    VerificationV1,
};
use crate::id::MessageId;
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::Duration;

/// Why a call failed, worded for the person at the terminal.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing answered at the address.
    NotRunning { api: String, detail: String },
    /// The token was refused.
    Unauthorized { message: String },
    /// The API answered with an error.
    Api { status: u16, message: String },
    /// The connection broke, or something else answered.
    Transport(String),
    /// The answer was not what this herald understands.
    Decode(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NotRunning { api, detail } => write!(
                f,
                "cannot reach the admin API at {api} ({detail}): the relay is not running there, or its API is disabled \
                 (`admin.token` is empty). Check `admin.address` and `admin.token` in the configuration, or pass --api and --token"
            ),
            ClientError::Unauthorized { message } => {
                write!(
                    f,
                    "the admin API refused the token ({message}); use the relay's `admin.token`, or pass --token"
                )
            }
            ClientError::Api { status, message } => write!(f, "{message} (HTTP {status})"),
            ClientError::Transport(e) => write!(f, "talking to the admin API failed: {e}"),
            ClientError::Decode(e) => write!(
                f,
                "the admin API's answer is not understood: {e} (is the relay a different herald version?)"
            ),
        }
    }
}

impl std::error::Error for ClientError {}

/// A decoded answer and the JSON it came from.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub value: T,
    pub json: String,
}

/// A connection to one relay's admin API.
pub struct AdminClient {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl AdminClient {
    /// `base` is like `http://127.0.0.1:8025` (a missing scheme means http).
    pub fn new(base: &str, token: &str) -> Self {
        let base = base.trim().trim_end_matches('/');
        let base = if base.contains("://") {
            base.to_string()
        } else {
            format!("http://{base}")
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build();
        Self {
            base,
            token: token.to_string(),
            agent,
        }
    }

    /// The API's base URL, as used.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn health(&self) -> Result<Answer<HealthV1>, ClientError> {
        self.call("GET", "/api/health")
    }

    pub fn message(&self, id: &MessageId) -> Result<Answer<MessageV1>, ClientError> {
        self.call("GET", &format!("/api/messages/{id}"))
    }

    /// Queued and finished messages by relay id, Message-ID, recipient or reference.
    pub fn search_messages(&self, query: &str) -> Result<Answer<MessageSearchV1>, ClientError> {
        self.call("GET", &format!("/api/messages?q={}", segment(query)))
    }

    pub fn summary(&self) -> Result<Answer<QueueSummaryV1>, ClientError> {
        self.call("GET", "/api/queue")
    }

    pub fn list(&self, limit: u64) -> Result<Answer<QueueListV1>, ClientError> {
        self.call("GET", &format!("/api/queue/messages?limit={limit}"))
    }

    /// One page of the event log; `query` is the URL query string
    /// (`after=…&type=…`), already encoded.
    pub fn events(&self, query: &str) -> Result<Answer<crate::events::EventPageV1>, ClientError> {
        self.call("GET", &format!("/api/events?{query}"))
    }

    pub fn suppressions(&self, query: &str) -> Result<Answer<crate::admin::suppressions::SuppressionListV1>, ClientError> {
        self.call("GET", &format!("/api/suppressions?{query}"))
    }

    pub fn suppression(&self, address: &str) -> Result<Answer<crate::admin::suppressions::SuppressionListV1>, ClientError> {
        self.call("GET", &format!("/api/suppressions/{}", segment(address)))
    }

    pub fn remove_suppression(&self, address: &str, scope: Option<&str>) -> Result<Answer<crate::admin::suppressions::SuppressionListV1>, ClientError> {
        let q = scope.map(|s| format!("?scope={}", segment(s))).unwrap_or_default();
        self.call("DELETE", &format!("/api/suppressions/{}{q}", segment(address)))
    }

    pub fn add_suppression(&self, request: &crate::admin::suppressions::AddSuppressionV1) -> Result<Answer<crate::store::suppressions::SuppressionV1>, ClientError> {
        let body = serde_json::to_value(request).map_err(|e| ClientError::Decode(e.to_string()))?;
        Self::decode(self.send("POST", "/api/suppressions", Some(body))?)
    }

    pub fn webhooks(&self) -> Result<Answer<Vec<crate::webhooks::WebhookStatusV1>>, ClientError> {
        self.call("GET", "/api/webhooks")
    }

    pub fn test_webhook(&self, name: &str) -> Result<Answer<crate::webhooks::WebhookTestV1>, ClientError> {
        self.call("POST", &format!("/api/webhooks/{name}/test"))
    }

    pub fn retry(&self, id: &MessageId) -> Result<Answer<MessageV1>, ClientError> {
        self.call("POST", &format!("/api/queue/{id}/retry"))
    }

    pub fn drop_message(&self, id: &MessageId) -> Result<Answer<MessageV1>, ClientError> {
        self.call("DELETE", &format!("/api/queue/{id}"))
    }

    /// Registers a customer domain; the answer holds the three records.
    pub fn add_domain(&self, request: &AddDomainV1) -> Result<Answer<DomainV1>, ClientError> {
        let body = serde_json::to_value(request).map_err(|e| ClientError::Decode(e.to_string()))?;
        Self::decode(self.send("POST", "/api/domains", Some(body))?)
    }

    pub fn domains(&self) -> Result<Answer<DomainListV1>, ClientError> {
        self.call("GET", "/api/domains")
    }

    pub fn domain(&self, domain: &str) -> Result<Answer<DomainV1>, ClientError> {
        self.call("GET", &format!("/api/domains/{}", segment(domain)))
    }

    /// Checks the domain's three records now ("check my records").
    pub fn verify_domain(&self, domain: &str) -> Result<Answer<VerificationV1>, ClientError> {
        self.call("POST", &format!("/api/domains/{}/verify", segment(domain)))
    }

    pub fn rotate_domain(&self, domain: &str) -> Result<Answer<RotationV1>, ClientError> {
        self.call("POST", &format!("/api/domains/{}/rotate", segment(domain)))
    }

    pub fn rotate_relay(&self) -> Result<Answer<RotationV1>, ClientError> {
        self.call("POST", "/api/relay/rotate")
    }

    pub fn remove_domain(&self, domain: &str) -> Result<Answer<DomainV1>, ClientError> {
        self.call("DELETE", &format!("/api/domains/{}", segment(domain)))
    }

    /// A stored message as herald will send it, with the inspect checks.
    pub fn inspect_stored(&self, id: &MessageId, request: &InspectRequestV1) -> Result<Answer<InspectV1>, ClientError> {
        let pairs = [("mail_from", &request.mail_from), ("ip", &request.ip), ("helo", &request.helo)];
        let query: Vec<String> = pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", segment(v)))).collect();
        let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
        self.call("GET", &format!("/api/inspect/{id}{query}"))
    }

    /// The identity herald would send mail From `domain` as, now.
    pub fn identity(&self, domain: &str) -> Result<Answer<IdentityV1>, ClientError> {
        self.call("GET", &format!("/api/identity/{}", segment(domain)))
    }

    /// The operator zone as a zone-file fragment (text, not JSON).
    pub fn zone(&self) -> Result<String, ClientError> {
        self.send("GET", "/api/dns/zone", None)
    }

    fn call<T: DeserializeOwned>(&self, method: &str, path: &str) -> Result<Answer<T>, ClientError> {
        Self::decode(self.send(method, path, None)?)
    }

    fn decode<T: DeserializeOwned>(json: String) -> Result<Answer<T>, ClientError> {
        let value = serde_json::from_str(&json).map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(Answer { value, json })
    }

    /// One request, with a JSON body if given; the answer's text.
    fn send(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Result<String, ClientError> {
        let request = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token));
        let response = match body {
            Some(json) => request.send_json(json),
            None => request.call(),
        };
        let response = response.map_err(|e| self.error(e))?;
        response.into_string().map_err(|e| ClientError::Transport(e.to_string()))
    }

    fn error(&self, e: ureq::Error) -> ClientError {
        match e {
            ureq::Error::Status(status, response) => {
                let text = response.into_string().unwrap_or_default();
                let message = serde_json::from_str::<ErrorV1>(&text).map(|e| e.error).unwrap_or(text);
                if status == 401 {
                    ClientError::Unauthorized { message }
                } else {
                    ClientError::Api { status, message }
                }
            }
            ureq::Error::Transport(t) => match t.kind() {
                ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => ClientError::NotRunning {
                    api: self.base.clone(),
                    detail: detail(&t),
                },
                _ => ClientError::Transport(detail(&t)),
            },
        }
    }
}

/// `text` as one URL path segment: everything but unreserved characters
/// (RFC 3986 §2.3) percent-encoded, so a typed `a/b` or `x?y` stays one
/// segment and reaches the API as typed.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The innermost cause, e.g. "Connection refused (os error 111)".
fn detail(t: &ureq::Transport) -> String {
    match std::error::Error::source(t) {
        Some(cause) => cause.to_string(),
        None => t.message().map_or_else(|| t.to_string(), str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments() {
        let cases = [
            ("customer.nl", "customer.nl"),
            ("not a domain", "not%20a%20domain"),
            ("a/b?c#d", "a%2Fb%3Fc%23d"),
            ("bücher.de", "b%C3%BCcher.de"),
        ];
        for (text, want) in cases {
            assert_eq!(segment(text), want, "{text}");
        }
    }
}
