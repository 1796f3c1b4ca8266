//! hickory-server's [`RequestHandler`] for the operator zone: one place
//! that turns a request into a response, in a fixed order of guards —
//! opcode, one question, rate limit, zone transfer, answer.
//!
//! hickory-server does the wire work: UDP and TCP framing, and on UDP it
//! stops adding records at the response's EDNS payload size (512 without
//! EDNS, RFC 1035 §4.2.1) and sets TC, so the client asks again over TCP
//! (RFC 7766). We advertise at most [`MAX_UDP_PAYLOAD`] (the DNS Flag Day
//! 2020 size, which avoids IP fragmentation).

use super::Zone;
use super::ratelimit::RateLimiter;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, MessageType, OpCode, ResponseCode};
use hickory_server::proto::rr::{Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Largest UDP response we send, whatever the client offers.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Records per message of a zone transfer (a DKIM TXT is ~450 bytes, so a
/// message stays well below 64 KiB).
const TRANSFER_CHUNK: usize = 64;

pub struct Handler {
    pub(super) zone: Arc<Zone>,
    pub(super) limiter: Mutex<RateLimiter>,
    /// Who may transfer the zone (`dns_server.secondaries`).
    pub(super) secondaries: Vec<IpAddr>,
}

/// What to send.
struct Plan {
    metadata: Metadata,
    /// One inner list per message (several only for a zone transfer).
    messages: Vec<(Vec<Record>, Vec<Record>)>,
}

impl Handler {
    fn plan(&self, request: &Request) -> Plan {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = false;
        let plan = |code: ResponseCode, metadata: Metadata| {
            let mut m = metadata;
            m.response_code = code;
            Plan {
                metadata: m,
                messages: vec![(Vec::new(), Vec::new())],
            }
        };
        if request.metadata.message_type != MessageType::Query {
            return plan(ResponseCode::FormErr, metadata);
        }
        match request.metadata.op_code {
            OpCode::Query => {}
            // Dynamic updates: this zone is the registry's, not the wire's.
            OpCode::Update => return plan(ResponseCode::Refused, metadata),
            _ => return plan(ResponseCode::NotImp, metadata),
        }
        let [query] = request.queries.queries() else {
            return plan(ResponseCode::FormErr, metadata);
        };
        let udp = request.protocol() == Protocol::Udp;
        let client = request.src().ip();
        if udp && !self.limiter.lock().map(|mut l| l.allow(client, Instant::now())).unwrap_or(true) {
            // Over budget: minimal and truncated ("slip"); TCP gets the answer.
            metadata.truncation = true;
            return plan(ResponseCode::NoError, metadata);
        }
        let snapshot = match self.zone.current() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "embedded DNS: cannot build the zone");
                return plan(ResponseCode::ServFail, metadata);
            }
        };
        let qname = query.name().into();
        let qtype = query.query_type();
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            // RFC 5936 §4.2: transfers go over TCP, to the configured
            // secondaries only. An IXFR is answered with the full zone
            // (RFC 1995 §4).
            if udp || !self.secondaries.contains(&client) || !snapshot.zone.zone_of(&qname) {
                tracing::info!(%client, udp, "embedded DNS: zone transfer refused");
                return plan(ResponseCode::Refused, metadata);
            }
            metadata.authoritative = true;
            let messages = snapshot
                .transfer()
                .chunks(TRANSFER_CHUNK)
                .map(|c| (c.to_vec(), Vec::new()))
                .collect();
            tracing::info!(%client, serial = snapshot.serial, "embedded DNS: zone transferred");
            return Plan { metadata, messages };
        }
        let reply = snapshot.answer(&qname, qtype);
        metadata.response_code = reply.code;
        metadata.authoritative = reply.authoritative;
        Plan {
            metadata,
            messages: vec![(reply.answers, reply.authorities)],
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response_handle: R) -> ResponseInfo {
        let plan = self.plan(request);
        // RFC 6891 §7: answer EDNS with EDNS; our payload size bounds what
        // hickory-server writes into a UDP response.
        let edns = request.edns.as_ref().map(|e| {
            let mut out = Edns::new();
            out.set_max_payload(e.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            out
        });
        let mut info = ResponseInfo::from(Header {
            metadata: plan.metadata,
            counts: HeaderCounts::default(),
        });
        for (answers, authorities) in &plan.messages {
            let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
            let response = builder.build(plan.metadata, answers.iter(), authorities.iter(), std::iter::empty(), std::iter::empty());
            match response_handle.send_response(response).await {
                Ok(sent) => info = sent,
                Err(e) => {
                    tracing::debug!(error = %e, client = %request.src(), "embedded DNS: cannot send a response");
                    break;
                }
            }
        }
        info
    }
}
