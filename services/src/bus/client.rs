//! Calling the bus: `BusClient` (publish, fetch, ack, term over `rpc`).
//!
//! Owns the client-side conventions (a fetch's RPC timeout covers its wait). It does not own
//! retries (`outbox` retries publishes; a consumer simply fetches again) or de-duplication.

use std::time::Duration;

use super::config::BUS_PORT;
use super::protocol::{
    BusRequest, BusResponse, Delivery, FETCH_COUNT_MAX, GroupName, MessageId, TopicName,
};
use crate::rpc::{RpcClient, RpcError};
use crate::transport::Transport;

/// Extra time a fetch's RPC gets beyond its wait, for the answer to travel.
pub const FETCH_MARGIN: Duration = Duration::from_millis(500);

/// Calls one bus.
#[derive(Debug)]
pub struct BusClient<T: Transport> {
    rpc: RpcClient<T>,
    host: String,
    port: u16,
}

impl<T: Transport> BusClient<T> {
    /// A client of the bus at `host`:`BUS_PORT`.
    pub fn new(transport: T, host: impl Into<String>) -> BusClient<T> {
        BusClient::with_port(transport, host, BUS_PORT)
    }

    pub fn with_port(transport: T, host: impl Into<String>, port: u16) -> BusClient<T> {
        BusClient {
            rpc: RpcClient::new(transport),
            host: host.into(),
            port,
        }
    }

    /// One call, answered within `timeout`.
    pub async fn call(
        &self,
        request: &BusRequest,
        timeout: Duration,
    ) -> Result<BusResponse, RpcError> {
        self.rpc.call(&self.host, self.port, request, timeout).await
    }

    /// Publishes one message. Safe to repeat with the same `msg_id` within the duplicate window.
    pub async fn publish(
        &self,
        topic: &TopicName,
        msg_id: MessageId,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<BusResponse, RpcError> {
        let request = BusRequest::Publish {
            topic: topic.clone(),
            msg_id,
            payload,
        };
        self.call(&request, timeout).await
    }

    /// The group's next messages, waiting up to `wait` for one.
    pub async fn fetch(
        &self,
        topic: &TopicName,
        group: &GroupName,
        wait: Duration,
    ) -> Result<Vec<Delivery>, RpcError> {
        let request = BusRequest::Fetch {
            topic: topic.clone(),
            group: group.clone(),
            count_max: FETCH_COUNT_MAX,
            wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        };
        match self.call(&request, wait + FETCH_MARGIN).await? {
            BusResponse::Messages { deliveries } => Ok(deliveries),
            other => Err(RpcError::Decode(format!("Fetch answered with {other:?}"))),
        }
    }

    /// Acknowledges a delivered message (`term`: dead-letter it instead).
    pub async fn finish(
        &self,
        topic: &TopicName,
        group: &GroupName,
        sequence: u64,
        term: bool,
        timeout: Duration,
    ) -> Result<BusResponse, RpcError> {
        let (topic, group) = (topic.clone(), group.clone());
        let request = if term {
            BusRequest::Term {
                topic,
                group,
                sequence,
            }
        } else {
            BusRequest::Ack {
                topic,
                group,
                sequence,
            }
        };
        self.call(&request, timeout).await
    }
}
