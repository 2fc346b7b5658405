//! Regression test for the 40 ms of Nagle's algorithm meeting delayed ACK:
//! an answer written in several segments (HTTP/2 headers, data, trailers)
//! waits for the peer's delayed ACK unless the server set TCP_NODELAY on the
//! accepted socket. Each server answers a call whose reply spans several
//! segments; the median of a run of such calls on one connection must stay far
//! below the 40 ms a delayed ACK costs (debug build, loaded CI machine:
//! single-digit milliseconds). Measured before the fix: 41-44 ms on every server.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::{application, Ca};
use proto::crl::v1 as crl;
use proto::issuance::v1 as iss;
use proto::registry::v1 as reg;
use proto::revocation::v1 as rev;

const CALLS: usize = 15;
/// Far below Linux's 40 ms minimum delayed-ACK timer, far above a loopback call.
const MEDIAN_LIMIT: Duration = Duration::from_millis(20);

async fn median<F, Fut>(what: &str, mut call: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    call().await; // the connection and TLS handshake are not what we measure
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let start = Instant::now();
        call().await;
        times.push(start.elapsed());
    }
    times.sort();
    let median = times[CALLS / 2];
    eprintln!("{what}: median {median:?}, min {:?}, max {:?}", times[0], times[CALLS - 1]);
    median
}

#[test]
fn every_grpc_server_answers_without_the_delayed_ack_wait() {
    let mut ca = Ca::new("");
    let addrs = ca.spawn(&["run"], &["registry", "issuance", "revocation", "crl"]);
    let dir = ca.dir.path().to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut issuance = ca.issuance(&addrs[1]).await;
        let card = issuance
            .submit_application(application("nagle-1", "765432", &dir))
            .await
            .expect("issue a card")
            .into_inner()
            .card_id;

        let registry = ca.registry(&addrs[0]).await;
        let registry_ms = median("registry GetCard", || {
            let (mut c, card) = (registry.clone(), card.clone());
            async move {
                let req = reg::GetCardRequest { key: Some(reg::get_card_request::Key::CardId(card)) };
                c.get_card(req).await.expect("registry GetCard");
            }
        })
        .await;

        let issuance_ms = median("issuance GetCard", || {
            let (mut c, card) = (issuance.clone(), card.clone());
            async move {
                let req = iss::CardRef { key: Some(iss::card_ref::Key::CardId(card)) };
                c.get_card(req).await.expect("issuance GetCard");
            }
        })
        .await;

        let revocation = ca.revocation(&addrs[2]).await;
        let revocation_ms = median("revocation GetStatus", || {
            let (mut c, card) = (revocation.clone(), card.clone());
            async move {
                let req = rev::StatusRequest { key: Some(rev::status_request::Key::CardId(card)) };
                c.get_status(req).await.expect("revocation GetStatus");
            }
        })
        .await;

        let publisher = ca.crl_publisher(&addrs[3]).await;
        let crl_ms = median("crl GetStatus", || {
            let mut c = publisher.clone();
            async move {
                c.get_status(crl::GetStatusRequest {}).await.expect("crl GetStatus");
            }
        })
        .await;

        for (server, t) in
            [("registry", registry_ms), ("issuance", issuance_ms), ("revocation", revocation_ms), ("crl", crl_ms)]
        {
            assert!(
                t < MEDIAN_LIMIT,
                "{server}: median {t:?} per call (limit {MEDIAN_LIMIT:?}): the accepted socket waits for delayed ACKs \
                 (no TCP_NODELAY?)"
            );
        }
    });
}
