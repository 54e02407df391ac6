//! Tests of `run_journal` over real TCP on 127.0.0.1 and `TokioStorage` in a temporary
//! directory: the shell, the client and the subscription work outside the simulator, and a
//! restart reads back everything acknowledged. Wall-clock tokio time (real sockets cannot be
//! paused): deadlines are generous, and nothing asserted depends on timing.

use std::time::Duration;

use super::client::{CatchUpSubscription, JournalClient};
use super::config::JournalConfig;
use super::protocol::{EventData, EventId, ExpectedVersion, JournalResponse, StreamName};
use super::run_journal;
use crate::storage::TokioStorage;
use crate::testing::{PortReporting, TempRoot};
use crate::transport::TokioTransport;

const TIMEOUT: Duration = Duration::from_secs(5);

fn event(id: u128) -> EventData {
    EventData {
        id: EventId(id),
        kind: "happened".to_owned(),
        data: vec![id as u8; 3],
    }
}

#[tokio::test]
async fn appends_survive_a_restart_and_a_subscription_goes_live() {
    // Goal: the journal shell end to end: appends are acknowledged, a retried append is a
    // duplicate, a restart reads back every acknowledged event, and a catch-up subscription
    // returns history and then a live event. Method: run the journal, append to two streams,
    // stop it (drop), start it again on the same directory, read back, then subscribe from 0
    // while appending one more event.
    let root = TempRoot::new("journal-shell");
    let storage = TokioStorage::new(&root.0);
    let transport = PortReporting::default();
    let config = JournalConfig {
        port: 0,
        ..JournalConfig::default()
    };
    let a = StreamName::new("saga-1");
    let b = StreamName::new("other");

    let first_run = async {
        let port = transport.port().await;
        let client = JournalClient::with_port(TokioTransport::loopback(), "127.0.0.1", port);
        let answer = client
            .append(
                &a,
                ExpectedVersion::NoStream,
                vec![event(1), event(2)],
                TIMEOUT,
            )
            .await
            .unwrap();
        assert!(matches!(
            answer,
            JournalResponse::Appended {
                version_first: 0,
                count: 2,
                duplicate: false,
                ..
            }
        ));
        let again = client
            .append(
                &a,
                ExpectedVersion::NoStream,
                vec![event(1), event(2)],
                TIMEOUT,
            )
            .await
            .unwrap();
        assert!(matches!(
            again,
            JournalResponse::Appended {
                duplicate: true,
                ..
            }
        ));
        client
            .append(&b, ExpectedVersion::Any, vec![event(3)], TIMEOUT)
            .await
            .unwrap();
        let conflict = client
            .append(&a, ExpectedVersion::Exact(0), vec![event(4)], TIMEOUT)
            .await
            .unwrap();
        assert_eq!(
            conflict,
            JournalResponse::WrongExpectedVersion { head: Some(1) }
        );
    };
    tokio::select! {
        biased;
        result = run_journal(transport.clone(), storage.clone(), config.clone()) => {
            panic!("journal stopped: {result:?}")
        }
        () = first_run => {}
    }

    let second_run = async {
        let port = transport.port().await;
        let client = JournalClient::with_port(TokioTransport::loopback(), "127.0.0.1", port);
        let (events, head) = client.read_stream(&a, TIMEOUT).await.unwrap();
        assert_eq!(head, Some(1));
        assert_eq!(
            events.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![EventId(1), EventId(2)]
        );
        let mut subscription = CatchUpSubscription::new(0, "saga-", Duration::from_secs(3));
        let history = subscription.next(&client).await.unwrap();
        assert_eq!(history.len(), 2, "history of saga-* streams only");
        assert_eq!(subscription.checkpoint(), 3, "past the filtered event too");
        let live = async { subscription.next(&client).await.unwrap() };
        let writer = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            client
                .append(&a, ExpectedVersion::Exact(1), vec![event(5)], TIMEOUT)
                .await
                .unwrap()
        };
        let (live, written) = tokio::join!(live, writer);
        assert!(matches!(
            written,
            JournalResponse::Appended {
                version_first: 2,
                position_first: 3,
                ..
            }
        ));
        assert_eq!(live.len(), 1);
        assert_eq!((live[0].id, live[0].position), (EventId(5), 3));
    };
    tokio::select! {
        biased;
        result = run_journal(transport.clone(), storage.clone(), config.clone()) => {
            panic!("journal stopped: {result:?}")
        }
        () = second_run => {}
    }
}

#[tokio::test]
async fn a_damaged_log_stops_the_journal() {
    // Goal: the journal refuses to start on a log damaged before its tail, rather than serving
    // a history with holes. Method: write a log with two batches, flip a bit in the first, and
    // start: run_journal returns the Log error.
    let root = TempRoot::new("journal-damaged");
    let storage = TokioStorage::new(&root.0);
    let transport = PortReporting::default();
    let config = JournalConfig {
        port: 0,
        ..JournalConfig::default()
    };
    let writes = async {
        let port = transport.port().await;
        let client = JournalClient::with_port(TokioTransport::loopback(), "127.0.0.1", port);
        for id in [1, 2] {
            client
                .append(
                    &StreamName::new("s"),
                    ExpectedVersion::Any,
                    vec![event(id)],
                    TIMEOUT,
                )
                .await
                .unwrap();
        }
    };
    tokio::select! {
        biased;
        result = run_journal(transport.clone(), storage.clone(), config.clone()) => {
            panic!("journal stopped: {result:?}")
        }
        () = writes => {}
    }
    let path = root.0.join("journal/log");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[14] ^= 0x08;
    std::fs::write(&path, bytes).unwrap();
    let result = run_journal(transport, storage, config).await;
    assert!(
        matches!(result, Err(super::JournalError::Log(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_journal_started_on_a_failing_disk_serves_once_the_disk_heals() {
    // Goal: a journal (re)started while its disk returns I/O errors does not exit: it retries
    // reading its log and serves once the disk heals (the motion bug's twin, see
    // `storage::read_durable`). Method: a disk failing from the start under a log holding one
    // acknowledged append; after three failed reads heal it; the journal binds, has the old
    // event, and acknowledges a new append (which needs a sync).
    let root = TempRoot::new("journal-heals");
    let config = JournalConfig {
        port: 0,
        log_read_retry: crate::testing::quick_read_retry(1000),
        ..JournalConfig::default()
    };
    let stream = StreamName::new("saga-1");
    let first = PortReporting::default();
    let seed = async {
        let port = first.port().await;
        let client = JournalClient::with_port(TokioTransport::loopback(), "127.0.0.1", port);
        client
            .append(&stream, ExpectedVersion::NoStream, vec![event(1)], TIMEOUT)
            .await
            .unwrap();
    };
    tokio::select! {
        biased;
        result = run_journal(first.clone(), TokioStorage::new(&root.0), config.clone()) => {
            panic!("journal stopped: {result:?}")
        }
        () = seed => {}
    }

    let disk = crate::testing::FailingDisk::failing(TokioStorage::new(&root.0));
    let (trace, _guard) = crate::testing::record_trace();
    let transport = PortReporting::default();
    let check = async {
        crate::testing::fail_three_reads_then_heal(&disk, &trace, "journal_started").await;
        let port = transport.port().await;
        let client = JournalClient::with_port(TokioTransport::loopback(), "127.0.0.1", port);
        let answer = client
            .append(&stream, ExpectedVersion::Exact(0), vec![event(2)], TIMEOUT)
            .await
            .unwrap();
        assert!(
            matches!(
                answer,
                JournalResponse::Appended {
                    version_first: 1,
                    duplicate: false,
                    ..
                }
            ),
            "{answer:?}"
        );
    };
    tokio::select! {
        biased;
        result = run_journal(transport.clone(), disk.clone(), config) => {
            panic!("journal stopped: {result:?}")
        }
        () = check => {}
    }
    assert_eq!(trace.named("durable_read_recovered").len(), 1);
}
